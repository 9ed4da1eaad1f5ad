#include "cli/cli.h"

#include <malloc.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "cli/config_file.h"
#include "core/crypto.h"
#include "core/log.h"
#include "core/time_util.h"
#include "geo/cidr_set.h"
#include "geo/country_lookup.h"
#include "ingest/group_committer.h"
#include "ingest/importer.h"
#include "ingest/ingestor.h"
#include "live/live_state.h"
#include "query/api.h"
#include "query/openapi.h"
#include "server/app_registry.h"
#include "server/dashboard.h"
#include "server/http_server.h"
#include "server/password_hash.h"
#include "server/rate_limiter.h"
#include "server/router.h"
#include "server/session_store.h"
#include "server/web_assets.h"
#include "store/backend.h"
#include "store/event_export.h"
#include "store/migrate.h"

namespace nucleon {

namespace {

constexpr const char* kUsage = R"(usage: nucleon COMMAND [ARGS] [--data DIR] [STORE FLAGS]

  serve [--listen HOST:PORT] [--fsync full|normal] [--threads N] [--max-body BYTES]
        [--geoip-db FILE.mmdb] [--trust-proxy CIDR[,CIDR]] [--demo]
        [--track-rate N] [--track-burst N] [--api-rate N] [--api-burst N]
        [--max-connections N] [--max-connections-per-ip N] [--header-timeout S]
        [--body-timeout S] [--body-min-rate BYTES] [--ws-idle-timeout S] [--ws-deflate on|off]
        [--max-pending-events N] [--cache-mb N] [--checkpoint-interval S]
        [--retain-days N|off]
                              serve the tracking protocol and the API
  app create NAME             create an app; prints {"appId","token"}
  app list                    list apps, one JSON object per line
  app set APP_ID --retain-days N|off
                              keep the app's events N whole days (off: the server's
                              default, --retain-days of serve)
  token create APP_ID         create another API token for an app
  token revoke PREFIX         revoke the tokens that start with PREFIX (8+ characters)
  user add EMAIL --role admin|viewer [--apps APP,APP]
                              create a dashboard account (password from standard
                              input or NUCLEON_PASSWORD)
  user list | remove EMAIL | passwd EMAIL
                              list accounts, remove one, change a password
  export APP_ID [--from T] [--to T] [--format ndjson|csv]
                              print every stored field of the app's events (with
                              session ends and tombstones), losslessly; T is Unix
                              seconds or an ISO 8601 date or time
  import APP_ID FILE|-        store an export (or tracking messages as an SDK sends
                              them) into the store in --data; creates the app when
                              missing; importing twice stores nothing more
  backup DEST                 copy the data folder (events and catalog) into the new
                              folder DEST, consistently, while a server runs on it
  stats [APP_ID]              print counts of apps, events, sessions, devices, users
  migrate --clickhouse URL[,URL...] [--clickhouse-database NAME] [--clickhouse-cluster NAME]
                              copy the embedded store in --data (no server running on
                              it) into an empty ClickHouse database, losslessly
  help [COMMAND]              this text, or a command's (also COMMAND --help)

Every command: --config FILE (default /etc/nucleon/nucleon.conf, skipped if
missing: `key = value` lines naming the flags below), --log-format text|json,
--help, --version.

  --version                   print the version

Store flags (every command): --store sqlite|clickhouse (default sqlite, the
embedded store in --data); with clickhouse: --clickhouse URL[,URL...] (HTTP
endpoints, tried in turn), --clickhouse-database NAME (default nucleon),
--clickhouse-cluster NAME (tables created across that cluster); --data then
holds the node's spool.

Every flag can also be set as an environment variable: --data is NUCLEON_DATA,
--listen NUCLEON_LISTEN, --fsync NUCLEON_FSYNC, --threads NUCLEON_THREADS,
--max-body NUCLEON_MAX_BODY, --geoip-db NUCLEON_GEOIP_DB, --trust-proxy
NUCLEON_TRUST_PROXY, --demo NUCLEON_DEMO=1; the limits likewise (--track-rate
is NUCLEON_TRACK_RATE, --max-connections-per-ip NUCLEON_MAX_CONNECTIONS_PER_IP,
...). A limit set to 0 is off. A flag beats its variable, which beats the
config file, which beats the default. See docs/cli.md for the defaults.
)";

struct Args {
  std::vector<std::string> positional;
  OptionMap flags;  // from the command line
  OptionMap file;   // from the config file (LoadConfig)
};

const std::map<std::string, bool>& KnownFlags() {
  // name -> takes a value
  static const std::map<std::string, bool> kFlags = {{"data", true},
                                                     {"listen", true},
                                                     {"fsync", true},
                                                     {"threads", true},
                                                     {"max-body", true},
                                                     {"demo", false},
                                                     {"help", false},
                                                     {"version", false},
                                                     {"from", true},
                                                     {"to", true},
                                                     {"format", true},
                                                     {"geoip-db", true},
                                                     {"trust-proxy", true},
                                                     {"track-rate", true},
                                                     {"track-burst", true},
                                                     {"api-rate", true},
                                                     {"api-burst", true},
                                                     {"max-connections", true},
                                                     {"max-connections-per-ip", true},
                                                     {"header-timeout", true},
                                                     {"body-timeout", true},
                                                     {"body-min-rate", true},
                                                     {"ws-idle-timeout", true},
                                                     {"ws-deflate", true},
                                                     {"max-pending-events", true},
                                                     {"cache-mb", true},
                                                     {"checkpoint-interval", true},
                                                     {"retain-days", true},
                                                     {"store", true},
                                                     {"clickhouse", true},
                                                     {"clickhouse-database", true},
                                                     {"clickhouse-cluster", true},
                                                     {"config", true},
                                                     {"role", true},
                                                     {"apps", true},
                                                     {"log-format", true},
                                                     {"version", false}};
  return kFlags;
}

bool ParseArgs(int argc, char** argv, Args* args, std::string* error) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0) {
      std::string name = a.substr(2), value;
      size_t eq = name.find('=');
      bool has_value = eq != std::string::npos;
      if (has_value) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      auto it = KnownFlags().find(name);
      if (it == KnownFlags().end()) {
        *error = "unknown flag --" + name;
        return false;
      }
      if (it->second && !has_value) {
        if (i + 1 >= argc) {
          *error = "flag --" + name + " needs a value";
          return false;
        }
        value = argv[++i];
      }
      if (!it->second) value = has_value ? value : "1";
      args->flags[name] = value;
    } else {
      args->positional.push_back(a);
    }
  }
  return true;
}

// A flag's value: the command line, else NUCLEON_<NAME>, else the config
// file, else the default.
std::string Flag(const Args& args, const std::string& name, const std::string& fallback) {
  return ResolveOption(args.flags, args.file, name, fallback);
}

int Fail(const Status& st) {
  std::fprintf(stderr, "nucleon: %s\n", st.ToString().c_str());
  return 1;
}

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "nucleon: %s\n\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

// The backend and its settings for a command on the data folder `data`
// (--store, --clickhouse...); `serve` adds its own settings. False with
// `*error` set for a bad combination.
bool ConfigFor(const Args& args, const std::string& data, StoreConfig* config, std::string* error,
               bool read_only = false) {
  config->backend = Flag(args, "store", "sqlite");
  config->data_dir = data;
  config->sqlite.read_only = read_only;
  config->clickhouse.read_only = read_only;
  if (config->backend != "sqlite" && config->backend != "clickhouse") {
    *error = "--store must be sqlite or clickhouse";
    return false;
  }
  const std::string urls = Flag(args, "clickhouse", "");
  for (size_t at = 0; at <= urls.size();) {
    size_t comma = urls.find(',', at);
    if (comma == std::string::npos) comma = urls.size();
    if (comma > at) config->clickhouse.urls.push_back(urls.substr(at, comma - at));
    at = comma + 1;
  }
  config->clickhouse.database = Flag(args, "clickhouse-database", "nucleon");
  config->clickhouse.cluster = Flag(args, "clickhouse-cluster", "");
  if (config->backend == "clickhouse" && config->clickhouse.urls.empty()) {
    *error = "--store clickhouse needs --clickhouse URL[,URL...]";
    return false;
  }
  if (config->clickhouse.database.empty()) {
    *error = "--clickhouse-database must not be empty";
    return false;
  }
  return true;
}

void PrintCredential(const NewCredential& c) {
  std::printf("{\"appId\":%s,\"token\":%s}\n", JsonQuote(c.app_id).c_str(),
              JsonQuote(c.token).c_str());
}

// The defaults of the limits held against abusive or slow clients (docs/cli.md).
struct ServeLimits {
  double track_rate = 300;    // HTTP tracking requests per second per client address
  double track_burst = 1000;  // ... at once
  double api_rate = 20;       // API requests per second per token
  double api_burst = 100;     // ... at once
  size_t max_connections = 100000;
  size_t max_connections_per_ip = 256;
  size_t header_timeout = 10;    // seconds
  size_t body_timeout = 20;      // seconds, before the minimum body rate applies
  size_t body_min_rate = 1024;   // bytes per second
  size_t ws_idle_timeout = 300;  // seconds
  size_t max_pending_events = GroupCommitter::Options{}.max_pending_events;
};

// A retention in days from `text`: a whole number of days from 0 to 36,500,
// or "off" (0: none). False for anything else.
bool ParseRetainDays(const std::string& text, int* days) {
  if (text == "off") {
    *days = 0;
    return true;
  }
  if (text.empty() || text.size() > 5 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *days = std::stoi(text);
  return *days <= 36500;
}

// Reads a non-negative number flag into `*out`; false with `*error` set when it is not one.
template <typename T>
bool NumberFlag(const Args& args, const std::string& name, T* out, std::string* error) {
  const std::string text = Flag(args, name, "");
  if (text.empty()) return true;
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && v >= 0 && v <= 1e12) {
      *out = static_cast<T>(v);
      return true;
    }
  } catch (...) {
  }
  *error = "--" + name + " takes a non-negative number, not " + text;
  return false;
}

bool ParseListen(const std::string& listen, std::string* host, uint16_t* port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  try {
    size_t used = 0;
    int p = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1 || p < 0 || p > 65535) return false;
    *port = static_cast<uint16_t>(p);
  } catch (...) {
    return false;
  }
  return !host->empty();
}

int Serve(const Args& args, const std::string& data) {
  // Memory: a few allocator arenas (not one per busy thread), and large blocks
  // (request bodies, decoded batches) mapped and given back as soon as freed,
  // so resident memory follows what is in use rather than the last peak.
  mallopt(M_ARENA_MAX, 2);
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
  std::string host;
  uint16_t port = 0;
  const std::string listen = Flag(args, "listen", "127.0.0.1:8080");
  if (!ParseListen(listen, &host, &port)) return Usage("bad --listen " + listen);
  const std::string fsync = Flag(args, "fsync", "full");
  if (fsync != "full" && fsync != "normal") return Usage("--fsync must be full or normal");
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  IngestLimits limits;
  try {
    threads = std::stoi(Flag(args, "threads", std::to_string(std::max(1, threads))));
    limits.max_body_bytes =
        std::stoull(Flag(args, "max-body", std::to_string(limits.max_body_bytes)));
  } catch (...) {
    return Usage("--threads and --max-body take numbers");
  }
  if (threads < 1 || threads > 256) return Usage("--threads must be 1..256");

  ServeLimits lim;
  std::string bad;
  if (!NumberFlag(args, "track-rate", &lim.track_rate, &bad) ||
      !NumberFlag(args, "track-burst", &lim.track_burst, &bad) ||
      !NumberFlag(args, "api-rate", &lim.api_rate, &bad) ||
      !NumberFlag(args, "api-burst", &lim.api_burst, &bad) ||
      !NumberFlag(args, "max-connections", &lim.max_connections, &bad) ||
      !NumberFlag(args, "max-connections-per-ip", &lim.max_connections_per_ip, &bad) ||
      !NumberFlag(args, "header-timeout", &lim.header_timeout, &bad) ||
      !NumberFlag(args, "body-timeout", &lim.body_timeout, &bad) ||
      !NumberFlag(args, "body-min-rate", &lim.body_min_rate, &bad) ||
      !NumberFlag(args, "ws-idle-timeout", &lim.ws_idle_timeout, &bad) ||
      !NumberFlag(args, "max-pending-events", &lim.max_pending_events, &bad)) {
    return Usage(bad);
  }
  const std::string ws_deflate = Flag(args, "ws-deflate", "on");
  if (ws_deflate != "on" && ws_deflate != "off") return Usage("--ws-deflate must be on or off");
  for (size_t seconds : {lim.header_timeout, lim.body_timeout, lim.ws_idle_timeout}) {
    if (seconds > 86400) return Usage("timeouts are at most 86400 seconds");
  }

  auto trusted = CidrSet::Parse(Flag(args, "trust-proxy", ""));
  if (!trusted.ok()) return Usage("--trust-proxy: " + trusted.status().message());
  auto geo = OpenCountryLookup(Flag(args, "geoip-db", ""));
  if (!geo.ok()) return Fail(geo.status());

  StoreConfig store_config;
  if (!ConfigFor(args, data, &store_config, &bad)) return Usage(bad);
  SqliteStoreOptions& store_options = store_config.sqlite;
  store_options.fsync_full = fsync == "full";
  store_config.clickhouse.fsync_full = fsync == "full";
  if (!NumberFlag(args, "cache-mb", &store_options.cache_mb, &bad)) return Usage(bad);
  if (store_options.cache_mb < 16) return Usage("--cache-mb must be at least 16");
  if (!NumberFlag(args, "checkpoint-interval", &store_options.checkpoint_interval_s, &bad)) {
    return Usage(bad);
  }
  if (store_options.checkpoint_interval_s > 3600) {
    return Usage("--checkpoint-interval is at most 3600 seconds");
  }
  int default_retain_days = 0;
  if (!ParseRetainDays(Flag(args, "retain-days", "off"), &default_retain_days)) {
    return Usage("--retain-days takes a whole number of days (at most 36500) or off");
  }
  auto store = OpenEventStore(store_config);
  if (!store.ok()) return Fail(store.status());
  auto catalog = OpenCatalog(store_config);
  if (!catalog.ok()) return Fail(catalog.status());

  const bool demo = Flag(args, "demo", "") == "1" || Flag(args, "demo", "") == "true";
  std::string demo_app, demo_token;
  if (demo) {
    auto apps = (*catalog)->ListApps();
    if (!apps.ok()) return Fail(apps.status());
    if (apps->empty()) {
      auto cred = (*catalog)->CreateApp("demo");
      if (!cred.ok()) return Fail(cred.status());
      demo_app = cred->app_id;
      demo_token = cred->token;
    } else {
      demo_app = apps->front().app_id;
    }
  }

  // The dashboard's sign-in account for a demo: made when there is none.
  std::string demo_email, demo_password;
  if (demo) {
    auto accounts = (*catalog)->ListAccounts();
    if (accounts.ok() && accounts->empty()) {
      const std::string raw = RandomBytes(12);
      demo_email = "admin@localhost";
      demo_password = Base64UrlEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
      auto hash = HashPassword(demo_password);
      if (!hash.ok()) return Fail(hash.status());
      if (Status st = (*catalog)->AddAccount(Account{demo_email, "admin", {}, *hash, NowMs()});
          !st.ok()) {
        return Fail(st);
      }
    }
  }
  // The dashboard's sessions read accounts through a catalog connection of their own.
  auto session_catalog = OpenCatalog(store_config);
  if (!session_catalog.ok()) return Fail(session_catalog.status());
  SessionStore sessions(std::move(*session_catalog), SessionStoreOptions{}, [] { return NowMs(); });

  AppRegistry registry(std::move(*catalog));
  // Retention: the server's default, and each app's own setting from the
  // catalog (picked up within a second of `nucleon app set`).
  registry.OnLoad([store = store->get(), default_retain_days](const CatalogSnapshot& snap) {
    RetentionPolicy policy;
    policy.default_days = default_retain_days;
    policy.app_days = snap.retain_days;
    store->SetRetention(policy);
  });
  if (Status st = registry.Start(); !st.ok()) return Fail(st);
  // Settings (/api/admin) changes the catalog through a connection of its own.
  auto admin_catalog = OpenCatalog(store_config);
  if (!admin_catalog.ok()) return Fail(admin_catalog.status());
  Dashboard dashboard(&sessions, &registry, std::move(*admin_catalog));

  IngestCounters counters;
  ServerCounters server_counters;
  LiveState live;
  GroupCommitter::Options commit_options;
  // 0 (off) would mean an unbounded backlog; the committer takes the largest it can.
  commit_options.max_pending_events =
      lim.max_pending_events > 0 ? lim.max_pending_events : std::numeric_limits<size_t>::max();
  GroupCommitter committer(store->get(), commit_options, &counters);
  committer.SetObserver(&live);
  Ingestor ingestor(&committer, &counters, limits);
  ingestor.SetPresenceSink(&live);
  ApiDeps api_deps;
  api_deps.store = store->get();
  api_deps.live = &live;
  api_deps.app_for_token = [&registry](std::string_view token) {
    return registry.AppForToken(token);
  };
  api_deps.run_exclusive = [&committer](std::function<Status()> task,
                                        std::function<void(const Status&)> done) {
    return committer.RunExclusive(std::move(task), std::move(done));
  };
  api_deps.now_ms = [] { return NowMs(); };
  RateLimiter api_limiter(RateLimiterOptions{lim.api_rate, lim.api_burst, 100000});
  if (api_limiter.enabled()) {
    // Keyed by the token's hash: the limiter never holds a usable token.
    api_deps.throttle = [&api_limiter, &server_counters](std::string_view token) {
      const Sha256Digest digest = Sha256(token);
      RateLimiter::Decision d = api_limiter.Take(
          std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
      if (d.allowed) return 0;
      server_counters.api_rate_limited.fetch_add(1, std::memory_order_relaxed);
      return d.retry_after_seconds;
    };
  }
  api_deps.openapi_json = std::string(OpenApiJson());
  api_deps.session_access = [&dashboard](const HttpRequest& request, const std::string& app,
                                         bool is_delete) {
    return dashboard.SessionAccess(request, app, is_delete);
  };
  Api api(std::move(api_deps));
  RateLimiter track_limiter(RateLimiterOptions{lim.track_rate, lim.track_burst, 100000});
  EventStore* event_store = store->get();
  Router router(RouterDeps{&registry, &ingestor, &committer, &counters, &api,
                           track_limiter.enabled() ? &track_limiter : nullptr, &server_counters,
                           [event_store] { return event_store->Ready(); },
                           [event_store] { return event_store->Metrics(); }, &dashboard});
  HttpServerOptions options;
  options.host = host;
  options.port = port;
  options.threads = threads;
  options.max_body_bytes = limits.max_body_bytes;
  options.geo = geo->get();
  options.trusted_proxies = *trusted;
  options.counters = &server_counters;
  options.max_connections = lim.max_connections;
  options.max_connections_per_ip = lim.max_connections_per_ip;
  options.header_timeout_seconds = static_cast<int>(lim.header_timeout);
  options.body_timeout_seconds = static_cast<int>(lim.body_timeout);
  options.body_min_bytes_per_second = lim.body_min_rate;
  options.ws_idle_timeout_seconds = static_cast<int>(lim.ws_idle_timeout);
  options.ws_deflate = ws_deflate == "on";
  HttpServer server(options, &router, &ingestor, &live);
  auto bound = server.Listen();
  if (!bound.ok()) return Fail(bound.status());
  const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                            std::to_string(*bound);
  LogInfo(
      "nucleon " NUCLEON_VERSION " serving",
      {{"data", data},
       {"store", store_config.backend},
       {"database", store_config.backend == "clickhouse" ? store_config.clickhouse.database : ""},
       {"cluster", store_config.clickhouse.cluster},
       {"fsync", fsync},
       {"threads", std::to_string(threads)},
       {"countries", std::string((*geo)->Source())}});
  LogInfo("listening on " + where, {{"address", where}});
  if (!WebAssets().empty()) LogInfo("dashboard at http://" + where + "/");
  if (demo) {
    std::printf("\nNucleon is running on http://%s\n\n", where.c_str());
    std::printf("  dashboard: http://%s/\n", where.c_str());
    if (!demo_password.empty()) {
      std::printf(
          "  sign in:   %s / %s   (shown once; change it with\n"
          "             build/nucleon user passwd %s --data %s)\n",
          demo_email.c_str(), demo_password.c_str(), demo_email.c_str(), data.c_str());
    } else {
      std::printf(
          "  sign in:   with an account of `nucleon user list --data %s`; add one with\n"
          "             build/nucleon user add EMAIL --role admin --data %s\n",
          data.c_str(), data.c_str());
    }
    std::printf("  app id:    %s\n", demo_app.c_str());
    if (!demo_token.empty()) {
      std::printf("  API token: %s   (shown once; keep it)\n", demo_token.c_str());
    } else {
      std::printf(
          "  API token: shown when the app was created; make another with\n"
          "             build/nucleon token create %s --data %s\n",
          demo_app.c_str(), data.c_str());
    }
    std::printf(
        "\nPoint a Nucleus SDK at it:\n\n"
        "  const Nucleus = require('nucleus-analytics')\n"
        "  Nucleus.init('%s', { endpoint: 'ws://%s' })\n\n",
        demo_app.c_str(), where.c_str());
    std::fflush(stdout);
  }
  // Once the store answers, the live window gets back the events of the last
  // minutes stored before this start (a restart does not empty it).
  std::atomic<bool> stopping{false};
  std::thread seed_live([&] {
    while (!stopping.load() && !event_store->Ready()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (stopping.load()) return;
    const int64_t now = NowMs();
    std::vector<Event> recent;
    Status st =
        event_store->StoredBeforeOpen(now - LiveState::kRecentMs, now, LiveState::kMaxRecentPerApp,
                                      [&recent](const Event& e) { recent.push_back(e); });
    if (!st.ok()) LogWarn("the live window starts empty: " + st.ToString());
    live.Seed(std::move(recent));
  });
  // Several nodes in front of one store: this node's devices are published
  // every second, so the others' live views show them (and drop them within
  // seconds once this node stops).
  std::thread publish_live;
  if (SharedLive* shared = event_store->shared_live()) {
    live.Share(shared);
    publish_live = std::thread([&live, &stopping] {
      bool failing = false;
      while (!stopping.load()) {
        Status st = live.PublishShared(NowMs());
        if (!st.ok() && !failing) {
          LogWarn("live presence is not shared right now: " + st.ToString());
        }
        if (st.ok() && failing) LogInfo("live presence is shared again");
        failing = !st.ok();
        for (int i = 0; i < 20 && !stopping.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
      // The connections closed by the stop, at once.
      (void)live.PublishShared(NowMs());
    });
  }
  server.Run([&committer] { committer.Flush(); });
  stopping.store(true);
  seed_live.join();
  if (publish_live.joinable()) publish_live.join();
  committer.Stop();
  registry.Stop();
  LogInfo("stopped");
  return 0;
}

int AppCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() < 2) return Usage("app needs a subcommand: create NAME | list | set APP_ID");
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  auto catalog = OpenCatalog(config);
  if (!catalog.ok()) return Fail(catalog.status());
  if (p[1] == "create") {
    if (p.size() != 3 || p[2].empty()) return Usage("app create takes one NAME");
    auto cred = (*catalog)->CreateApp(p[2]);
    if (!cred.ok()) return Fail(cred.status());
    PrintCredential(*cred);
    return 0;
  }
  if (p[1] == "list") {
    if (p.size() != 2) return Usage("app list takes no arguments");
    auto apps = (*catalog)->ListApps();
    if (!apps.ok()) return Fail(apps.status());
    for (const AppInfo& a : *apps) {
      std::printf("{\"appId\":%s,\"name\":%s,\"createdAt\":%s,\"tokens\":%d,\"retainDays\":%s}\n",
                  JsonQuote(a.app_id).c_str(), JsonQuote(a.name).c_str(),
                  JsonQuote(FormatIsoMs(a.created_ms)).c_str(), a.active_tokens,
                  a.retain_days > 0 ? std::to_string(a.retain_days).c_str() : "null");
    }
    return 0;
  }
  if (p[1] == "set") {
    // Only the command line: NUCLEON_RETAIN_DAYS and the config file set the
    // server's default, not one app's.
    auto flag = args.flags.find("retain-days");
    if (p.size() != 3 || flag == args.flags.end()) {
      return Usage("app set takes APP_ID --retain-days N|off");
    }
    int days = 0;
    if (!ParseRetainDays(flag->second, &days)) {
      return Usage("--retain-days takes a whole number of days (at most 36500) or off");
    }
    if (Status st = (*catalog)->SetRetention(p[2], days); !st.ok()) return Fail(st);
    std::printf("{\"appId\":%s,\"retainDays\":%s}\n", JsonQuote(p[2]).c_str(),
                days > 0 ? std::to_string(days).c_str() : "null");
    return 0;
  }
  return Usage("unknown app subcommand " + p[1]);
}

int TokenCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 3) return Usage("token takes: create APP_ID | revoke PREFIX");
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  auto catalog = OpenCatalog(config);
  if (!catalog.ok()) return Fail(catalog.status());
  if (p[1] == "create") {
    auto cred = (*catalog)->CreateToken(p[2]);
    if (!cred.ok()) return Fail(cred.status());
    PrintCredential(*cred);
    return 0;
  }
  if (p[1] == "revoke") {
    auto n = (*catalog)->RevokeTokens(p[2]);
    if (!n.ok())
      return n.status().code() == StatusCode::kInvalidArgument ? Usage(n.status().message())
                                                               : Fail(n.status());
    std::printf("{\"revoked\":%d}\n", *n);
    return 0;
  }
  return Usage("unknown token subcommand " + p[1]);
}

// A password for `user add` / `user passwd`: NUCLEON_PASSWORD, else the first
// line of standard input (asked for without echo on a terminal).
Result<std::string> ReadPassword() {
  if (const char* env = std::getenv("NUCLEON_PASSWORD"); env && *env) return std::string(env);
  const bool tty = isatty(STDIN_FILENO) == 1;
  termios saved{};
  if (tty) {
    std::fputs("Password: ", stderr);
    std::fflush(stderr);
    tcgetattr(STDIN_FILENO, &saved);
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::fputs("\n", stderr);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) {
    return Status::InvalidArgument(
        "no password: send it on standard input or set NUCLEON_PASSWORD");
  }
  NUCLEON_RETURN_IF_ERROR(CheckPasswordRules(line));
  return line;
}

int UserCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() < 2)
    return Usage("user needs a subcommand: add EMAIL | list | remove EMAIL | passwd EMAIL");
  const std::string& sub = p[1];
  if ((sub == "list" && p.size() != 2) || (sub != "list" && p.size() != 3)) {
    return Usage(sub == "list" ? "user list takes no arguments"
                               : "user " + sub + " takes one EMAIL");
  }
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  auto catalog = OpenCatalog(config);
  if (!catalog.ok()) return Fail(catalog.status());
  if (sub == "list") {
    auto accounts = (*catalog)->ListAccounts();
    if (!accounts.ok()) return Fail(accounts.status());
    for (const Account& a : *accounts) {
      std::string apps = "[";
      for (const std::string& app : a.apps) apps += (apps.size() > 1 ? "," : "") + JsonQuote(app);
      std::printf("{\"email\":%s,\"role\":%s,\"apps\":%s],\"createdAt\":%s}\n",
                  JsonQuote(a.email).c_str(), JsonQuote(a.role).c_str(), apps.c_str(),
                  JsonQuote(FormatIsoMs(a.created_ms)).c_str());
    }
    return 0;
  }
  auto email = NormalizeEmail(p[2]);
  if (!email.ok()) return Usage(email.status().message());
  if (sub == "add") {
    auto role_it = args.flags.find("role");
    const std::string role = role_it == args.flags.end() ? "" : role_it->second;
    if (role != "admin" && role != "viewer") return Usage("user add needs --role admin|viewer");
    std::vector<std::string> apps;
    if (auto it = args.flags.find("apps"); it != args.flags.end()) apps = SplitAppIds(it->second);
    if (role == "admin" && !apps.empty())
      return Usage("--apps is for viewers: an admin sees every app");
    if (!apps.empty()) {
      auto known = (*catalog)->ListApps();
      if (!known.ok()) return Fail(known.status());
      for (const std::string& app : apps) {
        bool found = false;
        for (const AppInfo& a : *known) found = found || a.app_id == app;
        if (!found) return Fail(Status::NotFound("unknown app " + app));
      }
    }
    auto password = ReadPassword();
    if (!password.ok()) return Usage(password.status().message());
    auto hash = HashPassword(*password);
    if (!hash.ok()) return Fail(hash.status());
    if (Status st = (*catalog)->AddAccount(Account{*email, role, apps, *hash, NowMs()}); !st.ok()) {
      return Fail(st);
    }
    std::printf("{\"email\":%s,\"role\":%s}\n", JsonQuote(*email).c_str(), JsonQuote(role).c_str());
    return 0;
  }
  if (sub == "remove") {
    auto removed = (*catalog)->RemoveAccount(*email);
    if (!removed.ok()) return Fail(removed.status());
    if (!*removed) return Fail(Status::NotFound("no account " + *email));
    std::printf("{\"removed\":%s}\n", JsonQuote(*email).c_str());
    return 0;
  }
  if (sub == "passwd") {
    auto account = (*catalog)->FindAccount(*email);
    if (!account.ok()) return Fail(account.status());
    if (!account->has_value()) return Fail(Status::NotFound("no account " + *email));
    auto password = ReadPassword();
    if (!password.ok()) return Usage(password.status().message());
    auto hash = HashPassword(*password);
    if (!hash.ok()) return Fail(hash.status());
    auto changed = (*catalog)->SetPasswordHash(*email, *hash);
    if (!changed.ok()) return Fail(changed.status());
    std::printf("{\"passwordChanged\":%s}\n", JsonQuote(*email).c_str());
    return 0;
  }
  return Usage("unknown user subcommand " + sub);
}

// ---- Data lifecycle: export, import, backup (docs/cli.md).

// Waits (a minute at most) until the store's read methods answer.
Status WaitUntilReady(EventStore& store) {
  for (int i = 0; i < 6000 && !store.Ready(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return store.Ready() ? Status::Ok() : Status::Unavailable("the store did not open in time");
}

int ExportCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 2) return Usage("export takes one APP_ID");
  const auto format = ParseExportFormat(Flag(args, "format", "ndjson"));
  if (!format) return Usage("--format must be ndjson or csv");
  int64_t from_ms = INT64_MIN, to_ms = INT64_MAX;
  for (auto [name, bound, end] : {std::tuple{"from", &from_ms, false}, {"to", &to_ms, true}}) {
    const std::string text = Flag(args, name, "");
    if (text.empty()) continue;
    const auto ms = ParseExportBound(text, end);
    if (!ms) return Usage(std::string("--") + name + " takes Unix seconds or an ISO 8601 time");
    *bound = *ms;
  }
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad, /*read_only=*/true)) return Usage(bad);
  auto store = OpenEventStore(config);
  if (!store.ok()) return Fail(store.status());
  // The embedded store exports from the file; ClickHouse answers once its schema is there.
  if (config.backend == "clickhouse") {
    if (Status ready = WaitUntilReady(**store); !ready.ok()) return Fail(ready);
  }
  Status st = ExportApp(**store, p[1], from_ms, to_ms, *format, [](std::string_view chunk) {
    return std::fwrite(chunk.data(), 1, chunk.size(), stdout) == chunk.size();
  });
  if (!st.ok()) return Fail(st);
  return std::fflush(stdout) == 0 ? 0 : Fail(Status::Internal("writing the export failed"));
}

int ImportCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 3) return Usage("import takes APP_ID and FILE (- for standard input)");
  const std::string& app_id = p[1];
  std::ifstream file;
  if (p[2] != "-") {
    file.open(p[2], std::ios::binary);
    if (!file) return Fail(Status::NotFound("cannot read " + p[2]));
  }
  std::istream& in = p[2] == "-" ? std::cin : file;
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  std::string token;
  {
    auto catalog = OpenCatalog(config);
    if (!catalog.ok()) return Fail(catalog.status());
    auto apps = (*catalog)->ListApps();
    if (!apps.ok()) return Fail(apps.status());
    bool known = false;
    for (const AppInfo& a : *apps) known = known || a.app_id == app_id;
    if (!known) {
      auto cred = (*catalog)->CreateAppWithId(app_id, app_id);
      if (!cred.ok()) return Fail(cred.status());
      token = cred->token;
    }
  }
  Result<ImportReport> report = Status::Ok();
  {
    config.sqlite.fsync_full = false;  // one sync when the store closes
    auto store = OpenEventStore(config);
    if (!store.ok()) return Fail(store.status());
    if (Status ready = WaitUntilReady(**store); !ready.ok()) return Fail(ready);
    report = ImportEvents(**store, app_id, in);
    if (!report.ok()) return Fail(report.status());
    if ((*store)->MaintenanceDue(/*closing=*/true)) {
      if (Status st = (*store)->Maintain(); !st.ok()) return Fail(st);
    }
    if (Status st = (*store)->Sync(); !st.ok()) return Fail(st);
  }
  if (!report->tombstones.empty()) {
    if (config.backend != "sqlite") {
      LogWarn("import: " + std::to_string(report->tombstones.size()) +
              " tombstones not kept (the ClickHouse store takes them from nucleon migrate only)");
    } else if (Status st = AddSqliteTombstones(data, app_id, report->tombstones); !st.ok()) {
      return Fail(st);
    }
  }
  // A created app's token is shown once, as `app create` does.
  const std::string created =
      token.empty() ? "" : ",\"appId\":" + JsonQuote(app_id) + ",\"token\":" + JsonQuote(token);
  std::printf(
      "{\"records\":%lld,\"stored\":%lld,\"already\":%lld,\"sessionEnds\":%lld,"
      "\"tombstones\":%zu,\"invalid\":%lld%s}\n",
      static_cast<long long>(report->records), static_cast<long long>(report->stored),
      static_cast<long long>(report->already), static_cast<long long>(report->session_ends),
      report->tombstones.size(), static_cast<long long>(report->invalid), created.c_str());
  return 0;
}

int BackupCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 2) return Usage("backup takes one DEST folder");
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  if (config.backend != "sqlite") {
    return Fail(Status::InvalidArgument(
        "backup copies the embedded store; back up a ClickHouse database with ClickHouse's own"
        " tools (docs/cli.md)"));
  }
  if (Status st = BackupSqliteFolder(data, p[1]); !st.ok()) return Fail(st);
  std::printf("{\"backup\":%s}\n", JsonQuote(p[1]).c_str());
  return 0;
}

int MigrateCommand(const Args& args, const std::string& data) {
  if (args.positional.size() != 1) return Usage("migrate takes no positional arguments");
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad)) return Usage(bad);
  if (config.clickhouse.urls.empty()) return Usage("migrate needs --clickhouse URL[,URL...]");
  auto report = MigrateToClickHouse(data, config.clickhouse,
                                    [](const std::string& line) { LogInfo("migrate: " + line); });
  if (!report.ok()) return Fail(report.status());
  std::printf(
      "{\"apps\":%lld,\"tokens\":%lld,\"accounts\":%lld,\"events\":%lld,\"sessions\":%lld,"
      "\"tombstones\":%lld}\n",
      static_cast<long long>(report->apps), static_cast<long long>(report->tokens),
      static_cast<long long>(report->accounts), static_cast<long long>(report->events),
      static_cast<long long>(report->sessions), static_cast<long long>(report->tombstones));
  return 0;
}

int StatsCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() > 2) return Usage("stats takes at most one APP_ID");
  StoreConfig config;
  std::string bad;
  if (!ConfigFor(args, data, &config, &bad, /*read_only=*/true)) return Usage(bad);
  auto store = OpenEventStore(config);
  if (!store.ok()) return Fail(store.status());
  auto stats = (*store)->Stats(p.size() == 2 ? p[1] : "");
  if (!stats.ok()) return Fail(stats.status());
  std::printf("{\"apps\":%lld,\"events\":%lld,\"sessions\":%lld,\"devices\":%lld,\"users\":%lld}\n",
              static_cast<long long>(stats->apps), static_cast<long long>(stats->events),
              static_cast<long long>(stats->sessions), static_cast<long long>(stats->devices),
              static_cast<long long>(stats->users));
  return 0;
}

// --- Help, version, configuration file and log format -----------------------

// Each command's `--help` (also `nucleon help COMMAND`), printed to standard
// output; the options of every command follow it (kCommonHelp).
const std::map<std::string, std::string>& CommandHelp() {
  static const std::map<std::string, std::string> kHelp = {
      {"serve", R"(usage: nucleon serve [FLAGS]

Serves the Nucleus tracking protocol (WebSocket and HTTP) and the API v1 on one
address, storing into --data (or ClickHouse). Logs go to standard error;
SIGTERM or SIGINT stops it gracefully. Flags (variable, default):

  --listen HOST:PORT          NUCLEON_LISTEN, 127.0.0.1:8080 (port 0: a free one)
  --fsync full|normal         NUCLEON_FSYNC, full (normal: survives a crash, not power loss)
  --threads N                 NUCLEON_THREADS, the number of cores
  --max-body BYTES            NUCLEON_MAX_BODY, 5242880: largest body or WebSocket message
  --geoip-db FILE.mmdb        NUCLEON_GEOIP_DB, none: MaxMind-format country database
                              (else Debian's tor-geoipdb when installed)
  --trust-proxy CIDR[,CIDR]   NUCLEON_TRUST_PROXY, none: peers whose X-Forwarded-For counts
  --demo                      NUCLEON_DEMO, off: create a demo app and print an SDK snippet
  --track-rate N              NUCLEON_TRACK_RATE, 300: tracking requests/s per address
  --track-burst N             NUCLEON_TRACK_BURST, 1000
  --api-rate N                NUCLEON_API_RATE, 20: API requests/s per token
  --api-burst N               NUCLEON_API_BURST, 100
  --max-connections N         NUCLEON_MAX_CONNECTIONS, 10000
  --max-connections-per-ip N  NUCLEON_MAX_CONNECTIONS_PER_IP, 256
  --header-timeout S          NUCLEON_HEADER_TIMEOUT, 10
  --body-timeout S            NUCLEON_BODY_TIMEOUT, 20
  --body-min-rate BYTES       NUCLEON_BODY_MIN_RATE, 1024 (bytes/s after --body-timeout)
  --ws-idle-timeout S         NUCLEON_WS_IDLE_TIMEOUT, 300
  --ws-deflate on|off         NUCLEON_WS_DEFLATE, on: permessage-deflate when the SDK offers it
  --max-pending-events N      NUCLEON_MAX_PENDING_EVENTS, 100000: backlog before refusing
  --cache-mb N                NUCLEON_CACHE_MB, 256 (at least 16)
  --checkpoint-interval S     NUCLEON_CHECKPOINT_INTERVAL, 5 (at most 3600)
  --retain-days N|off         NUCLEON_RETAIN_DAYS, off: keep each app's events for today
                              and the N whole UTC days before it, unless the app has its
                              own setting (nucleon app set); older ones are removed

A limit set to 0 is off. GET /metrics answers counters in Prometheus text
format, GET /healthz whether the server is up and ready.
)"},
      {"app", R"(usage: nucleon app create NAME | nucleon app list
       nucleon app set APP_ID --retain-days N|off

  app create NAME   create an app; prints {"appId","token"} (the token is shown once)
  app list          list apps, one JSON object per line:
                    {"appId","name","createdAt","tokens","retainDays"} (retainDays
                    null: the server's default, serve --retain-days)
  app set APP_ID --retain-days N|off
                    keep the app's events of today and the N whole UTC days before
                    it (1 to 36500); older events are removed, with everything they
                    made (docs/semantics.md, "Retention"), and new ones dated
                    before that are not stored. off (or 0): the server's default.
                    Prints {"appId","retainDays"}

Works while a server runs on the same store; it picks the change up within a second.
)"},
      {"token", R"(usage: nucleon token create APP_ID | nucleon token revoke PREFIX

  token create APP_ID   create another API token for the app; prints {"appId","token"}
  token revoke PREFIX   revoke every token starting with PREFIX (8+ characters,
                        e.g. the prefix `app list` shows); prints {"revoked":N}
)"},
      {"user", R"(usage: nucleon user add EMAIL --role admin|viewer [--apps APP,APP]
       nucleon user list | nucleon user remove EMAIL | nucleon user passwd EMAIL

Dashboard accounts, kept in the catalog (the embedded one, or ClickHouse with
--store clickhouse).
  user add EMAIL --role admin|viewer [--apps APP,APP]
                     create an account; an admin sees every app and may delete
                     users, a viewer sees the apps listed and changes nothing.
                     The password (8+ characters) is read from NUCLEON_PASSWORD,
                     else the first line of standard input (not echoed on a
                     terminal). Stored as an argon2id hash. Prints {"email","role"}
  user list          one JSON object per line: {"email","role","apps","createdAt"}
  user remove EMAIL  remove the account; its sessions end at once
  user passwd EMAIL  set a new password (read as for add); its sessions end at once

Works while a server runs on the same store.
)"},
      {"export", R"(usage: nucleon export APP_ID [--from TIME] [--to TIME] [--format ndjson|csv]

Prints every stored event of the app to standard output, oldest first, with
every stored field, then each session's end and (for a whole export) the
deleted users' tombstones: one JSON object per line, or CSV with a header
(docs/cli.md lists the fields). --from/--to bound the event time (inclusive).
Reads the store directly and works while a server runs on it.
)"},
      {"import", R"(usage: nucleon import APP_ID FILE|-

Stores an NDJSON export (or tracking messages {"data":[...]} as SDKs send
them) into the store, through the same path as tracked batches: importing the
same file twice stores nothing the second time. Creates the app with that id
when the catalog has none (embedded store) and prints its new token. Run it
with no server on the data folder. Prints {"stored","already",...}.
)"},
      {"backup", R"(usage: nucleon backup DEST

Copies the embedded store (events and catalog) into the new folder DEST while a
server may run on it: a consistent snapshot of every acknowledged commit.
Restore by serving DEST (`nucleon serve --data DEST`). ClickHouse deployments
are backed up with ClickHouse's own tools.
)"},
      {"stats", R"(usage: nucleon stats [APP_ID]

Prints {"apps","events","sessions","devices","users"} for the whole store or one app.
)"},
      {"migrate", R"(usage: nucleon migrate --data DIR --clickhouse URL[,URL...]
                       [--clickhouse-database NAME] [--clickhouse-cluster NAME]

Copies the embedded store in DIR (stop the server on it first) into an empty
ClickHouse database: apps, token hashes, dashboard accounts, every event,
session ends and deleted users' tombstones. Prints
{"apps","tokens","accounts","events","sessions","tombstones"}.
)"},
  };
  return kHelp;
}

constexpr const char* kCommonHelp = R"(
Every command:
  --data DIR                  NUCLEON_DATA, ./data: data folder (with ClickHouse: the spool)
  --store sqlite|clickhouse   NUCLEON_STORE, sqlite
  --clickhouse URL[,URL...]   NUCLEON_CLICKHOUSE: HTTP endpoints, tried in turn
  --clickhouse-database NAME  NUCLEON_CLICKHOUSE_DATABASE, nucleon
  --clickhouse-cluster NAME   NUCLEON_CLICKHOUSE_CLUSTER: create tables on this cluster
  --config FILE               NUCLEON_CONFIG, /etc/nucleon/nucleon.conf (skipped if missing)
  --log-format text|json      NUCLEON_LOG_FORMAT, text: one JSON object per log line with json
  --help, --version

The config file holds `key = value` lines naming these flags without the dashes
(`listen = 0.0.0.0:8080`, `cache-mb = 512`, `demo = true`); `#` starts a comment
line. A flag beats its NUCLEON_ variable, which beats the file, which beats the
default. Exit status: 0 ok, 1 runtime error, 2 usage error.
)";

int PrintVersion() {
  std::printf("nucleon %s\n", NUCLEON_VERSION);
  return 0;
}

// `nucleon --help`, `nucleon help [COMMAND]`, `nucleon COMMAND --help`.
int PrintHelp(const std::string& command) {
  auto it = CommandHelp().find(command);
  if (it == CommandHelp().end()) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fputs(it->second.c_str(), stdout);
  std::fputs(kCommonHelp, stdout);
  return 0;
}

// Reads the config file into `args->file`: --config / NUCLEON_CONFIG (which
// must exist), else the default path (skipped when missing). 0, or the exit
// status of the failure after printing it.
int LoadConfig(Args* args) {
  const std::string chosen = ResolveOption(args->flags, {}, "config", "");
  KnownOptions settable = KnownFlags();
  for (const char* name : {"config", "help", "version"}) settable.erase(name);
  auto file =
      ReadConfigFile(chosen.empty() ? kDefaultConfigPath : chosen, !chosen.empty(), settable);
  if (!file.ok()) {
    std::fprintf(stderr, "nucleon: %s\n", file.status().message().c_str());
    return file.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  args->file = std::move(*file);
  return 0;
}

// --log-format text|json for every command; false for another value.
bool ApplyLogFormat(const Args& args) {
  const std::string format = Flag(args, "log-format", "text");
  if (format != "text" && format != "json") return false;
  SetLogFormat(format == "json" ? LogFormat::kJson : LogFormat::kText);
  return true;
}

}  // namespace

int RunCli(int argc, char** argv) {
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) return Usage(error);
  if (args.flags.count("version")) return PrintVersion();
  if (args.positional.empty()) return args.flags.count("help") ? PrintHelp("") : Usage("");
  const std::string& cmd = args.positional[0];
  if (cmd == "help") return PrintHelp(args.positional.size() > 1 ? args.positional[1] : "");
  if (args.flags.count("help")) return PrintHelp(cmd);
  if (int status = LoadConfig(&args); status != 0) return status;
  if (!ApplyLogFormat(args)) return Usage("--log-format must be text or json");
  const std::string data = Flag(args, "data", "./data");
  if (cmd == "serve") {
    if (args.positional.size() != 1) return Usage("serve takes no positional arguments");
    return Serve(args, data);
  }
  if (cmd == "app") return AppCommand(args, data);
  if (cmd == "token") return TokenCommand(args, data);
  if (cmd == "user") return UserCommand(args, data);
  if (cmd == "export") return ExportCommand(args, data);
  if (cmd == "import") return ImportCommand(args, data);
  if (cmd == "backup") return BackupCommand(args, data);
  if (cmd == "stats") return StatsCommand(args, data);
  if (cmd == "migrate") return MigrateCommand(args, data);
  return Usage("unknown command " + cmd);
}

}  // namespace nucleon
