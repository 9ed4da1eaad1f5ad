#include "store/clickhouse/testing/clickhouse_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

namespace nucleon {

namespace {

constexpr const char* kScript = NUCLEON_CLICKHOUSE_SERVER_SH;

// The script waits at most 30 s for the server to answer and to go; this
// bound only catches a script that hangs in spite of that.
constexpr auto kScriptTimeout = std::chrono::seconds(90);

std::string ServerBinary() {
  const char* env = getenv("CLICKHOUSE_SERVER");
  return env && *env ? env : "/usr/sbin/clickhouse-server";
}

// Whether nothing listens on (or holds) 127.0.0.1:port right now.
bool PortFree(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool free = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return free;
}

// A port P with P, P+1 and P+2 free: the server takes all three (HTTP,
// native TCP, interserver HTTP). Random, so that test binaries running side by
// side rarely reach for the same one; within NUCLEON_TEST_PORTS=LO-HI when set
// (as the end-to-end suites' harness, tests/node/lib/ports.js); 0 when none
// was found.
uint16_t PickPorts() {
  int lo = 20000, hi = 39997;
  if (const char* env = getenv("NUCLEON_TEST_PORTS"); env && *env) {
    int a = 0, b = 0;
    char tail = 0;
    if (sscanf(env, "%d-%d%c", &a, &b, &tail) != 2 || a < 1024 || b > 65535 || b - a < 64) {
      return 0;
    }
    lo = a;
    hi = b - 2;
  }
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> dist(lo, hi);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int p = dist(rng);
    if (PortFree(p) && PortFree(p + 1) && PortFree(p + 2)) return static_cast<uint16_t>(p);
  }
  return 0;
}

// Runs the script with `args`, its stdout and stderr into *output; true when
// it exited with 0 within kScriptTimeout.
bool RunScript(const std::vector<std::string>& args, std::string* output) {
  output->clear();
  std::vector<std::string> argv_storage = {"/bin/bash", kScript};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *output = "pipe failed";
    return false;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    *output = "fork failed";
    return false;
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec. The server the script starts
    // must not inherit the test's sockets (a listener it inherited would keep
    // that port taken): every other descriptor is closed.
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (close_range(3, ~0U, 0) != 0) {
      const long max_fd = sysconf(_SC_OPEN_MAX);
      for (long fd = 3; fd < (max_fd > 0 && max_fd < 65536 ? max_fd : 65536); ++fd) close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);

  const auto deadline = std::chrono::steady_clock::now() + kScriptTimeout;
  bool timed_out = false;
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;  // a timeout: the deadline check ends the loop
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the script (and all that holds its output) is done
    output->append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) {
    kill(pid, SIGKILL);
    *output += "\n(server.sh did not finish within " +
               std::to_string(std::chrono::seconds(kScriptTimeout).count()) + " s)";
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

ClickHouseServer::~ClickHouseServer() { Stop(); }

bool ClickHouseServer::Available() { return access(ServerBinary().c_str(), X_OK) == 0; }

bool ClickHouseServer::Start(std::string* error) {
  if (running_) return true;
  if (dir_.path().empty()) {
    *error = "no temporary folder";
    return false;
  }
  // A restart keeps its port (the tests' clients hold its URL). A first start
  // may lose a race for its ports to another process: then new ones.
  const bool restart = port_ != 0;
  std::string failures;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (!restart) {
      port_ = PickPorts();
      if (port_ == 0) {
        *error =
            "no three free consecutive loopback ports (within NUCLEON_TEST_PORTS when set: "
            "LO-HI, 1024..65535, at least 65 ports)";
        return false;
      }
    }
    std::string output;
    if (RunScript({"start", dir_.path(), std::to_string(port_)}, &output)) {
      running_ = true;
      return true;
    }
    failures += "port " + std::to_string(port_) + ": " + output + "\n";
    // Whatever the failed attempt left behind goes before the next one.
    std::string ignored;
    RunScript({"stop", dir_.path(), "KILL"}, &ignored);
  }
  if (!restart) port_ = 0;
  *error = "clickhouse-server did not start:\n" + failures;
  return false;
}

void ClickHouseServer::Stop() {
  if (!running_) return;
  std::string ignored;
  RunScript({"stop", dir_.path()}, &ignored);
  running_ = false;
}

void ClickHouseServer::Kill() {
  if (!running_) return;
  std::string ignored;
  RunScript({"stop", dir_.path(), "KILL"}, &ignored);
  running_ = false;
}

std::string ClickHouseServer::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

}  // namespace nucleon
