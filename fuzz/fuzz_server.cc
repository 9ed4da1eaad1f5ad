#include "fuzz/fuzz_server.h"

#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <span>

#include "core/limits.h"
#include "core/log.h"
#include "core/testing/temp_dir.h"
#include "core/time_util.h"
#include "ingest/batch_decoder.h"
#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "live/live_state.h"
#include "query/api.h"
#include "query/openapi.h"
#include "server/app_registry.h"
#include "server/router.h"
#include "store/catalog.h"
#include "store/event_store.h"
#include "store/fault_injecting_event_store.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {

namespace {

[[noreturn]] void Fail(std::string_view what) {
  std::fprintf(stderr, "fuzz harness: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

// The two captured SDK messages of tracking-protocol.md (4.x, then 3.x), so
// that users, sessions, events, props and errors exist for the API to find.
constexpr const char* kFixture[] = {
    R"({"data":[
 {"type":"init","id":308778,"date":1795685879840,"payload":{"plan":"pro","age":34},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo","client":"js","platform":"Linux","osVersion":"6.18.44","locale":"C"},
 {"type":"userid","id":824369,"date":1795685880355,"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"props","id":110478,"date":1795685880370,"payload":{"plan":"pro","age":34},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"event","name":"PLAYED_TRACK","id":808676,"date":1795685880384,"payload":{"trackName":"Song","duration":120},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"nucleus:view","name":"Cart","id":212948,"date":1795685880399,"payload":{"count":5},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo"},
 {"type":"error","name":"myCustomError","id":125047,"date":1795685880413,"payload":{"stack":"Error: boom\n    at ...","message":"boom"},"sessionId":490330,"userId":"richard","anonId":"hGzKvaoI5Mno","deviceId":"CiF9fH5XFVjD7Xo","client":"js","platform":"Linux","osVersion":"6.18.44","locale":"C"}
]})",
    R"({"data":[
 {"type":"init","name":null,"date":"2026-11-26T09:38:04.549Z","appId":"fuzzApp1","id":286638,"userId":"bob","machineId":"0035969e8d8370f","sessionId":126166,"payload":{},"client":"nodejs","platform":"Linux","osVersion":"6.18.44","totalRam":23.54,"version":"0.0.0","locale":"C","arch":"x64","moduleVersion":"3.0.9"},
 {"type":"event","name":"SAVED","date":"2026-11-26T09:38:04.577Z","appId":"fuzzApp1","id":558588,"userId":"bob","machineId":"0035969e8d8370f","sessionId":126166,"payload":{"kind":"doc"}}
]})",
};

// One app with one token, another app the token does not grant; never changes.
class FixedCatalog final : public Catalog {
 public:
  Result<NewCredential> CreateApp(const std::string&) override { return Unsupported(); }
  Result<std::vector<AppInfo>> ListApps() override { return Unsupported(); }
  Result<NewCredential> CreateToken(const std::string&) override { return Unsupported(); }
  Result<std::vector<TokenInfo>> ListTokens(const std::string&) override { return Unsupported(); }
  Result<int> RevokeTokens(const std::string&) override { return Unsupported(); }
  Status SetRetention(const std::string&, int) override { return Unsupported(); }
  Result<std::shared_ptr<const CatalogSnapshot>> Load() override {
    auto snap = std::make_shared<CatalogSnapshot>();
    snap->apps.emplace(FuzzServer::kAppId);
    snap->apps.emplace(FuzzServer::kOtherAppId);
    snap->token_apps.emplace(TokenHashHex(FuzzServer::kToken), FuzzServer::kAppId);
    return std::shared_ptr<const CatalogSnapshot>(std::move(snap));
  }
  Result<int64_t> DataVersion() override { return int64_t{0}; }

 private:
  static Status Unsupported() { return Status::Internal("the fuzz catalog is fixed"); }
};

// Reads go to the real store; writes are acknowledged without changing it
// (appends as resends, a deletion as done when the user exists), so the data
// every input meets stays the fixture and the store stays small over millions
// of runs. Storing events is covered by the store's own tests.
class FrozenEventStore final : public EventStoreWrapper {
 public:
  using EventStoreWrapper::EventStoreWrapper;
  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    inserted->assign(events.size(), 0);
    return Status::Ok();
  }
  Status Probe() override { return Status::Ok(); }
  Status DeleteUser(std::string_view app_id, std::string_view user_key) override {
    auto user = target()->User(app_id, user_key);
    return user.ok() ? Status::Ok() : user.status();
  }
};

// Answers collected from any thread; the harness counts them.
template <typename T>
struct Answers {
  std::mutex mu;
  int calls = 0;
  T first{};
  void Add(T value) {
    std::lock_guard<std::mutex> lock(mu);
    if (calls++ == 0) first = std::move(value);
  }
};

}  // namespace

struct FuzzServer::Parts {
  TempDir dir;
  IngestCounters counters;
  std::unique_ptr<EventStore> sqlite;
  std::unique_ptr<FrozenEventStore> store;
  std::unique_ptr<AppRegistry> registry;
  LiveState live;
  std::unique_ptr<GroupCommitter> committer;
  std::unique_ptr<Ingestor> ingestor;
  std::unique_ptr<Api> api;
  std::unique_ptr<Router> router;
  uint64_t next_connection = 1;
};

FuzzServer& FuzzServer::Get() {
  // Destroyed at exit (the writer thread stopped, the temp folder removed);
  // a crash leaves the folder behind.
  static FuzzServer server;
  return server;
}

FuzzServer::FuzzServer() : parts_(std::make_unique<Parts>()) {
  // Invalid events and refused requests are normal here; only errors are news.
  SetLogLevel(LogLevel::kError);
  Parts& p = *parts_;
  if (p.dir.path().empty()) Fail("no temp folder");
  SqliteStoreOptions options;
  options.fsync_full = false;
  auto sqlite = OpenSqliteEventStore(p.dir.path(), options);
  if (!sqlite.ok()) Fail(sqlite.status().ToString());
  p.sqlite = std::move(sqlite).value();
  for (const char* message : kFixture) {
    auto batch = DecodeBatch(message, kAppId, kNowMs, IngestLimits{});
    if (!batch.ok()) Fail(batch.status().ToString());
    std::vector<Event> events;
    for (DecodedEvent& d : batch->events) events.push_back(std::move(d.event));
    std::vector<uint8_t> inserted;
    if (Status st = p.sqlite->Append(events, &inserted); !st.ok()) Fail(st.ToString());
  }
  p.store = std::make_unique<FrozenEventStore>(p.sqlite.get());

  p.registry = std::make_unique<AppRegistry>(std::make_unique<FixedCatalog>());
  if (Status st = p.registry->Reload(); !st.ok()) Fail(st.ToString());

  GroupCommitter::Options copts;
  copts.probe_interval_ms = 3600 * 1000;
  p.committer = std::make_unique<GroupCommitter>(p.store.get(), copts, &p.counters);
  p.committer->SetObserver(&p.live);
  p.ingestor = std::make_unique<Ingestor>(p.committer.get(), &p.counters, IngestLimits{});
  p.ingestor->SetPresenceSink(&p.live);

  ApiDeps api;
  api.store = p.store.get();
  api.live = &p.live;
  AppRegistry* registry = p.registry.get();
  api.app_for_token = [registry](std::string_view token) { return registry->AppForToken(token); };
  GroupCommitter* committer = p.committer.get();
  api.run_exclusive = [committer](std::function<Status()> task,
                                  std::function<void(const Status&)> done) {
    return committer->RunExclusive(std::move(task), std::move(done));
  };
  api.now_ms = [] { return kNowMs; };
  api.openapi_json = std::string(OpenApiJson());
  p.api = std::make_unique<Api>(std::move(api));
  p.router = std::make_unique<Router>(
      RouterDeps{p.registry.get(), p.ingestor.get(), p.committer.get(), &p.counters, p.api.get()});
}

FuzzServer::~FuzzServer() {
  if (parts_->committer) parts_->committer->Stop();
}

HttpResponse FuzzServer::Handle(const HttpRequest& request) {
  Parts& p = *parts_;
  auto answers = std::make_shared<Answers<HttpResponse>>();
  p.router->Handle(request, [answers](HttpResponse r) { answers->Add(std::move(r)); });
  p.committer->Flush();  // tracking and deletions answer from the writer thread
  std::lock_guard<std::mutex> lock(answers->mu);
  if (answers->calls != 1) {
    Fail("request answered " + std::to_string(answers->calls) + " times: " + request.method + " " +
         request.target);
  }
  const HttpResponse& r = answers->first;
  if (r.status < 100 || r.status > 599) Fail("HTTP status " + std::to_string(r.status));
  if (r.content_type == "application/json") CheckJson(r.body, request.target);
  return r;
}

void FuzzServer::Socket(std::string_view target, const std::vector<std::string_view>& messages) {
  Parts& p = *parts_;
  std::optional<std::string> app = Router::TrackingSocketApp(target);
  if (!app || !p.router->AppExists(*app)) return;  // the upgrade is refused
  const uint64_t connection = p.next_connection++;
  for (std::string_view message : messages) {
    if (message.size() > p.ingestor->limits().max_body_bytes) break;  // the server closes (1009)
    using Ack = std::pair<Status, std::string>;
    auto answers = std::make_shared<Answers<Ack>>();
    p.ingestor->Ingest(*app, message, "DE", connection,
                       [answers](const Status& st, std::string ack) {
                         answers->Add({st, std::move(ack)});
                       });
    p.committer->Flush();
    std::lock_guard<std::mutex> lock(answers->mu);
    if (answers->calls != 1) Fail("message answered " + std::to_string(answers->calls) + " times");
    if (!answers->first.first.ok()) continue;
    // The Swift SDK crashes on any other ack shape.
    const std::string& ack = answers->first.second;
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(ack, ec);
    if (ec || !v.is_object() || v.get_object().size() != 1 ||
        !v.get_object().contains("reportedIds") || !v.get_object().at("reportedIds").is_array()) {
      Fail("bad ack: " + ack);
    }
  }
  const int64_t now = NowMs();  // presence is stamped with the real clock
  (void)p.live.Devices(*app, now);
  (void)p.live.UserCount(*app, now);
  (void)p.live.RecentEvents(*app, now, 1000);
  p.live.Closed(connection);
}

std::string FuzzServer::AppForToken(std::string_view token) const {
  return parts_->registry->AppForToken(token);
}

void CheckJson(std::string_view text, std::string_view what) {
  boost::json::parse_options opts;
  opts.allow_invalid_utf8 = true;
  opts.max_depth = 64;
  boost::system::error_code ec;
  (void)boost::json::parse(text, ec, {}, opts);
  if (ec) {
    Fail("invalid JSON (" + ec.message() + ") for " + std::string(what) + ": " +
         std::string(text.substr(0, 500)));
  }
}

std::string_view TakeLine(std::string_view* rest) {
  size_t nl = rest->find('\n');
  std::string_view line = rest->substr(0, nl);
  rest->remove_prefix(nl == std::string_view::npos ? rest->size() : nl + 1);
  return line;
}

HttpRequest ParseRequestText(std::string_view data) {
  HttpRequest request;
  std::string_view line = TakeLine(&data);
  size_t sp = line.find(' ');
  request.method = std::string(line.substr(0, sp));
  if (sp != std::string_view::npos) request.target = std::string(line.substr(sp + 1));
  while (!data.empty()) {
    line = TakeLine(&data);
    if (line.empty()) break;
    size_t colon = line.find(':');
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string_view value =
        colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    request.headers.emplace_back(std::move(name), std::string(value));
  }
  request.body = std::string(data);
  return request;
}

}  // namespace nucleon
