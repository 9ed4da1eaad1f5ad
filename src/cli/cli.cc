#include "cli/cli.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "geo/cidr_set.h"
#include "geo/country_lookup.h"
#include "core/time_util.h"
#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "live/live_state.h"
#include "query/api.h"
#include "query/openapi.h"
#include "server/app_registry.h"
#include "server/http_server.h"
#include "server/router.h"
#include "store/catalog.h"
#include "store/event_store.h"

namespace nucleon {

namespace {

constexpr const char* kUsage = R"(usage: nucleon COMMAND [ARGS] [--data DIR]

  serve [--listen HOST:PORT] [--fsync full|normal] [--threads N] [--max-body BYTES]
        [--geoip-db FILE.mmdb] [--trust-proxy CIDR[,CIDR]] [--demo]
                              serve the tracking protocol and the API
  app create NAME             create an app; prints {"appId","token"}
  app list                    list apps, one JSON object per line
  token create APP_ID         create another API token for an app
  token revoke PREFIX         revoke the tokens that start with PREFIX (8+ characters)
  export APP_ID               print every stored event of an app, one JSON object per line
  stats [APP_ID]              print counts of apps, events, sessions, devices, users

Every flag can also be set as an environment variable: --data is NUCLEON_DATA,
--listen NUCLEON_LISTEN, --fsync NUCLEON_FSYNC, --threads NUCLEON_THREADS,
--max-body NUCLEON_MAX_BODY, --geoip-db NUCLEON_GEOIP_DB, --trust-proxy
NUCLEON_TRUST_PROXY, --demo NUCLEON_DEMO=1.
)";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;
};

const std::map<std::string, bool>& KnownFlags() {
  // name -> takes a value
  static const std::map<std::string, bool> kFlags = {
      {"data", true}, {"listen", true}, {"fsync", true}, {"threads", true},
      {"max-body", true}, {"demo", false}, {"help", false}, {"geoip-db", true},
      {"trust-proxy", true}};
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

// A flag's value: the command line, else NUCLEON_<NAME>, else the default.
std::string Flag(const Args& args, const std::string& name, const std::string& fallback) {
  auto it = args.flags.find(name);
  if (it != args.flags.end()) return it->second;
  std::string env = "NUCLEON_";
  for (char c : name) env += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  if (const char* v = std::getenv(env.c_str()); v && *v) return v;
  return fallback;
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

void PrintCredential(const NewCredential& c) {
  std::printf("{\"appId\":%s,\"token\":%s}\n", JsonQuote(c.app_id).c_str(),
              JsonQuote(c.token).c_str());
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
    limits.max_body_bytes = std::stoull(Flag(args, "max-body", std::to_string(limits.max_body_bytes)));
  } catch (...) {
    return Usage("--threads and --max-body take numbers");
  }
  if (threads < 1 || threads > 256) return Usage("--threads must be 1..256");

  auto trusted = CidrSet::Parse(Flag(args, "trust-proxy", ""));
  if (!trusted.ok()) return Usage("--trust-proxy: " + trusted.status().message());
  auto geo = OpenCountryLookup(Flag(args, "geoip-db", ""));
  if (!geo.ok()) return Fail(geo.status());

  auto store = OpenSqliteEventStore(data, SqliteStoreOptions{fsync == "full", false});
  if (!store.ok()) return Fail(store.status());
  auto catalog = OpenSqliteCatalog(data);
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

  AppRegistry registry(std::move(*catalog));
  if (Status st = registry.Start(); !st.ok()) return Fail(st);

  IngestCounters counters;
  LiveState live;
  GroupCommitter committer(store->get(), GroupCommitter::Options{}, &counters);
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
  api_deps.openapi_json = std::string(OpenApiJson());
  Api api(std::move(api_deps));
  Router router(RouterDeps{&registry, &ingestor, &committer, &counters, &api});
  HttpServerOptions options;
  options.host = host;
  options.port = port;
  options.threads = threads;
  options.max_body_bytes = limits.max_body_bytes;
  options.geo = geo->get();
  options.trusted_proxies = *trusted;
  HttpServer server(options, &router, &ingestor, &live);
  auto bound = server.Listen();
  if (!bound.ok()) return Fail(bound.status());
  const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                            std::to_string(*bound);
  LogInfo("data folder " + data + ", fsync " + fsync + ", " + std::to_string(threads) +
          " threads, countries from " + std::string((*geo)->Source()));
  LogInfo("listening on " + where);
  if (demo) {
    std::printf("\nNucleon is running on http://%s\n\n", where.c_str());
    std::printf("  app id:    %s\n", demo_app.c_str());
    if (!demo_token.empty()) {
      std::printf("  API token: %s   (shown once; keep it)\n", demo_token.c_str());
    } else {
      std::printf("  API token: shown when the app was created; make another with\n"
                  "             build/nucleon token create %s --data %s\n",
                  demo_app.c_str(), data.c_str());
    }
    std::printf("\nPoint a Nucleus SDK at it:\n\n"
                "  const Nucleus = require('nucleus-analytics')\n"
                "  Nucleus.init('%s', { endpoint: 'ws://%s' })\n\n",
                demo_app.c_str(), where.c_str());
    std::fflush(stdout);
  }
  server.Run([&committer] { committer.Flush(); });
  committer.Stop();
  registry.Stop();
  LogInfo("stopped");
  return 0;
}

int AppCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() < 2) return Usage("app needs a subcommand: create NAME | list");
  auto catalog = OpenSqliteCatalog(data);
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
      std::printf("{\"appId\":%s,\"name\":%s,\"createdAt\":%s,\"tokens\":%d}\n",
                  JsonQuote(a.app_id).c_str(), JsonQuote(a.name).c_str(),
                  JsonQuote(FormatIsoMs(a.created_ms)).c_str(), a.active_tokens);
    }
    return 0;
  }
  return Usage("unknown app subcommand " + p[1]);
}

int TokenCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 3) return Usage("token takes: create APP_ID | revoke PREFIX");
  auto catalog = OpenSqliteCatalog(data);
  if (!catalog.ok()) return Fail(catalog.status());
  if (p[1] == "create") {
    auto cred = (*catalog)->CreateToken(p[2]);
    if (!cred.ok()) return Fail(cred.status());
    PrintCredential(*cred);
    return 0;
  }
  if (p[1] == "revoke") {
    auto n = (*catalog)->RevokeTokens(p[2]);
    if (!n.ok()) return n.status().code() == StatusCode::kInvalidArgument ? Usage(n.status().message())
                                                                          : Fail(n.status());
    std::printf("{\"revoked\":%d}\n", *n);
    return 0;
  }
  return Usage("unknown token subcommand " + p[1]);
}

int ExportCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() != 2) return Usage("export takes one APP_ID");
  auto store = OpenSqliteEventStore(data, SqliteStoreOptions{true, true});
  if (!store.ok()) return Fail(store.status());
  std::string line;
  Status st = (*store)->Export(p[1], [&line](const Event& e) {
    line = "{\"type\":";
    line += JsonQuote(EventTypeName(e.type));
    if (!e.name.empty()) line += ",\"name\":" + JsonQuote(e.name);
    if (!e.client_id.empty()) line += ",\"id\":" + e.client_id;
    line += ",\"deviceId\":" + JsonQuote(e.device_id);
    line += ",\"sessionId\":" + JsonQuote(e.session_id);
    line += ",\"userId\":" + JsonQuote(e.user_key);
    line += ",\"time\":" + JsonQuote(FormatIsoMs(e.time_ms));
    line += ",\"payload\":" + e.payload_json;
    line += "}\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
  });
  if (!st.ok()) return Fail(st);
  return 0;
}

int StatsCommand(const Args& args, const std::string& data) {
  const auto& p = args.positional;
  if (p.size() > 2) return Usage("stats takes at most one APP_ID");
  auto store = OpenSqliteEventStore(data, SqliteStoreOptions{true, true});
  if (!store.ok()) return Fail(store.status());
  auto stats = (*store)->Stats(p.size() == 2 ? p[1] : "");
  if (!stats.ok()) return Fail(stats.status());
  std::printf("{\"apps\":%lld,\"events\":%lld,\"sessions\":%lld,\"devices\":%lld,\"users\":%lld}\n",
              static_cast<long long>(stats->apps), static_cast<long long>(stats->events),
              static_cast<long long>(stats->sessions), static_cast<long long>(stats->devices),
              static_cast<long long>(stats->users));
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) return Usage(error);
  if (args.flags.count("help") || args.positional.empty()) return Usage("");
  const std::string data = Flag(args, "data", "./data");
  const std::string& cmd = args.positional[0];
  if (cmd == "serve") {
    if (args.positional.size() != 1) return Usage("serve takes no positional arguments");
    return Serve(args, data);
  }
  if (cmd == "app") return AppCommand(args, data);
  if (cmd == "token") return TokenCommand(args, data);
  if (cmd == "export") return ExportCommand(args, data);
  if (cmd == "stats") return StatsCommand(args, data);
  if (cmd == "help") return Usage("");
  return Usage("unknown command " + cmd);
}

}  // namespace nucleon
