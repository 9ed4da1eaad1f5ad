#!/usr/bin/env bash
# The Debian package: builds it from the build folder with CPack, checks its
# control data and contents, installs it with dpkg -i, checks the installed
# binary, man page, config file, system user, data folder and systemd unit,
# serves briefly as the service would (as its user, with its config file, on
# a free loopback port), then removes and purges it and checks that nothing
# of it is left. Installing needs root (as in CI); without root, or where a
# nucleon package, user files or folders already exist, the test stops after
# the build checks and reports itself skipped (exit 77) with the reason.
#
#   tests/package/deb_test.sh BUILD_DIR
set -euo pipefail

build_dir="$(cd "$1" && pwd)"
work="$(mktemp -d /tmp/nucleon-deb-XXXXXX)"
installed=0
user_existed=1
group_existed=1

say() { echo "deb_test: $*"; }
fail() { echo "deb_test: FAIL: $*" >&2; exit 1; }
skip() { echo "deb_test: SKIP: $*"; exit 77; }

cleanup() {
  local status=$?
  if [ "$installed" = 1 ]; then
    dpkg --purge nucleon >/dev/null 2>&1 || echo "deb_test: could not purge nucleon" >&2
  fi
  # The package leaves its system user behind on purge (files elsewhere may
  # belong to it); one this test made goes, so the machine is left as found.
  if [ "$user_existed" = 0 ] && getent passwd nucleon >/dev/null; then userdel nucleon || true; fi
  if [ "$group_existed" = 0 ] && getent group nucleon >/dev/null; then groupdel nucleon || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# --- Build and inspect --------------------------------------------------------
say "building the package"
timeout 300 cpack -G DEB --config "$build_dir/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb="$(ls "$work"/out/nucleon_*.deb)"
say "built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

version="$(dpkg-deb -f "$deb" Version)"
[ "$(dpkg-deb -f "$deb" Package)" = nucleon ] || fail "package name"
[ "$("$build_dir/nucleon" --version)" = "nucleon $version" ] ||
  fail "package version $version is not the binary's ($("$build_dir/nucleon" --version))"
depends="$(dpkg-deb -f "$deb" Depends)"
for lib in libc6 libstdc++6 libsqlite3-0 libssl3 libroaring0; do
  [[ "$depends" == *"$lib "* ]] || fail "Depends lacks $lib: $depends"
done
info="$(dpkg-deb -I "$deb")"
for part in conffiles postinst prerm postrm md5sums; do
  grep -q " $part " <<<"$info" || fail "no $part in the control archive"
done
[ "$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)" = /etc/nucleon/nucleon.conf ] ||
  fail "conffiles should list /etc/nucleon/nucleon.conf"
contents="$(dpkg-deb -c "$deb")"
for path in ./usr/bin/nucleon ./usr/lib/systemd/system/nucleon.service \
  ./etc/nucleon/nucleon.conf ./usr/share/man/man1/nucleon.1.gz ./usr/share/doc/nucleon/README.md; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
say "control data and contents ok (Depends: $depends)"

# --- Install ------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "installing with dpkg -i needs root (run as root, as CI does); the build checks passed"
if dpkg-query -W -f='${Status}' nucleon 2>/dev/null | grep -q installed; then
  skip "a nucleon package is already installed on this machine; left alone"
fi
for path in /etc/nucleon /var/lib/nucleon /usr/bin/nucleon; do
  [ ! -e "$path" ] || skip "$path already exists on this machine; left alone"
done
getent passwd nucleon >/dev/null || user_existed=0
getent group nucleon >/dev/null || group_existed=0

say "dpkg -i"
installed=1
timeout 120 dpkg -i "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i failed"; }

[ "$(/usr/bin/nucleon --version)" = "nucleon $version" ] || fail "installed nucleon --version"
/usr/bin/nucleon serve --help | grep -q -- '--listen HOST:PORT' || fail "nucleon serve --help"
zcat /usr/share/man/man1/nucleon.1.gz | grep -q '^\.TH NUCLEON 1' || fail "man page"
[ "$(getent passwd nucleon | cut -d: -f7)" = /usr/sbin/nologin ] || fail "nucleon user's shell"
[ "$(id -u nucleon)" -lt 1000 ] || fail "nucleon is not a system user"
[ "$(stat -c '%U:%G %a' /var/lib/nucleon)" = "nucleon:nucleon 750" ] ||
  fail "/var/lib/nucleon is $(stat -c '%U:%G %a' /var/lib/nucleon)"
dpkg-query -W -f='${Conffiles}' nucleon | grep -q /etc/nucleon/nucleon.conf || fail "conffile not registered"
unit=/usr/lib/systemd/system/nucleon.service
for option in User=nucleon ProtectSystem=strict ProtectHome=yes NoNewPrivileges=yes PrivateTmp=yes \
  ReadWritePaths=/var/lib/nucleon LimitNOFILE= 'ExecStart=/usr/bin/nucleon serve'; do
  grep -q "^$option" "$unit" || fail "the unit lacks $option"
done
if command -v systemd-analyze >/dev/null; then
  timeout 60 systemd-analyze verify "$unit" >"$work/verify.log" 2>&1 ||
    { cat "$work/verify.log" >&2; fail "systemd-analyze verify $unit"; }
  if [ -s "$work/verify.log" ]; then cat "$work/verify.log"; fi
  say "systemd-analyze verify: ok"
else
  say "systemd-analyze not installed: the unit is not verified"
fi

# Serves as the unit does (its user, its config file, so its data folder) on a
# free loopback port instead of the configured one, and answers /healthz.
say "serving as the nucleon user"
setpriv --reuid nucleon --regid nucleon --init-groups --inh-caps=-all -- \
  /usr/bin/nucleon serve --config /etc/nucleon/nucleon.conf --listen 127.0.0.1:0 \
  --log-format json >"$work/serve.log" 2>&1 &
serve_pid=$!
stop_server() {
  kill -TERM "$serve_pid" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$serve_pid" 2>/dev/null || true
}
address=""
for _ in $(seq 1 100); do
  address="$(sed -n 's/.*"message":"listening on \([0-9.:]*\)".*/\1/p' "$work/serve.log")"
  [ -n "$address" ] && break
  kill -0 "$serve_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$address" ] || { stop_server; cat "$work/serve.log" >&2; fail "the installed server did not start"; }
health="$(curl -fsS --max-time 5 "http://$address/healthz")" || { stop_server; fail "no /healthz from $address"; }
stop_server
wait "$serve_pid" || { cat "$work/serve.log" >&2; fail "the installed server did not stop cleanly"; }
grep -q '"data":"/var/lib/nucleon"' "$work/serve.log" || fail "the server did not use /var/lib/nucleon"
[ -n "$(find /var/lib/nucleon -user nucleon -type f)" ] || fail "nothing written to /var/lib/nucleon"
say "served on $address: $health"

# Installing again (an upgrade's maintainer-script path) keeps the user, the
# data and an edited config file.
echo "# edited" >>/etc/nucleon/nucleon.conf
timeout 120 dpkg -i --force-confold "$deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i again failed"; }
[ -n "$(find /var/lib/nucleon -user nucleon -type f)" ] || fail "reinstalling lost /var/lib/nucleon"
tail -n 1 /etc/nucleon/nucleon.conf | grep -q '^# edited$' || fail "reinstalling replaced the edited config file"
say "reinstalled over itself: data and config kept"

# --- Remove and purge -------------------------------------------------------------
timeout 120 dpkg -r nucleon >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -r failed"; }
[ ! -e /usr/bin/nucleon ] || fail "dpkg -r left /usr/bin/nucleon"
[ -e /etc/nucleon/nucleon.conf ] || fail "dpkg -r removed the conffile (only purge should)"
timeout 120 dpkg --purge nucleon >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg --purge failed"; }
installed=0
for path in /etc/nucleon /var/lib/nucleon "$unit" /etc/systemd/system/multi-user.target.wants/nucleon.service \
  /var/lib/systemd/deb-systemd-helper-enabled/nucleon.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-masked/nucleon.service; do
  [ ! -e "$path" ] || fail "purge left $path"
done
dpkg-query -W nucleon >/dev/null 2>&1 && fail "dpkg still knows nucleon"
say "installed, ran, removed and purged $(basename "$deb")"
