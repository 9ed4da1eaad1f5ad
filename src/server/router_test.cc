#include "server/router.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "core/limits.h"
#include "core/testing/temp_dir.h"
#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "server/app_registry.h"
#include "store/catalog.h"
#include "store/event_store.h"
#include "store/fault_injecting_event_store.h"
#include "store/sqlite/sqlite_catalog.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {
namespace {

std::string HeaderOf(const HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "(absent)";
}

constexpr const char* kTwoEvents =
    R"({"data":[{"type":"init","id":1,"date":1795685879840,"sessionId":490330,"deviceId":"D1"},)"
    R"({"type":"event","name":"PLAYED","id":"two","date":1795685880384,"sessionId":490330,"deviceId":"D1"}]})";

// A real SQLite store (behind the fault injector), committer, ingestor and
// app registry on a temp folder, wired as the server wires them.
class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      // The app is created as the admin CLI would: another catalog connection.
      auto cli = OpenSqliteCatalog(dir_.path());
      ASSERT_TRUE(cli.ok()) << cli.status().ToString();
      auto cred = (*cli)->CreateApp("test");
      ASSERT_TRUE(cred.ok()) << cred.status().ToString();
      app_id_ = cred->app_id;
    }
    auto catalog = OpenSqliteCatalog(dir_.path());
    ASSERT_TRUE(catalog.ok());
    registry_ = std::make_unique<AppRegistry>(std::move(catalog).value());
    ASSERT_TRUE(registry_->Reload().ok());

    SqliteStoreOptions opts;
    opts.fsync_full = false;
    auto store = OpenSqliteEventStore(dir_.path(), opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    fault_ = std::make_unique<FaultInjectingEventStore>(store_.get());
    GroupCommitter::Options copts;
    copts.probe_interval_ms = 3600 * 1000;  // health changes only through commits here
    committer_ = std::make_unique<GroupCommitter>(fault_.get(), copts, &counters_);
    ingestor_ = std::make_unique<Ingestor>(committer_.get(), &counters_, IngestLimits{});
    RouterDeps deps;
    deps.apps = registry_.get();
    deps.ingestor = ingestor_.get();
    deps.committer = committer_.get();
    deps.counters = &counters_;
    router_ = std::make_unique<Router>(deps);
  }

  void TearDown() override {
    if (committer_) committer_->Stop();
  }

  // Sends one request and waits for its (possibly asynchronous) answer.
  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "",
                    std::vector<std::pair<std::string, std::string>> headers = {},
                    const std::string& country = "") {
    HttpRequest req;
    req.method = method;
    req.target = target;
    req.body = body;
    req.headers = std::move(headers);
    req.country = country;
    return Send(req, router_.get());
  }

  // Sends `req` through `router` and waits for its answer.
  HttpResponse Send(const HttpRequest& req, Router* router) {
    const std::string& method = req.method;
    const std::string& target = req.target;
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    auto calls = std::make_shared<std::atomic<int>>(0);
    std::future<HttpResponse> future = promise->get_future();
    router->Handle(req, [promise, calls](HttpResponse r) {
      if (calls->fetch_add(1) == 0) promise->set_value(std::move(r));
    });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << method << " " << target << ": no response";
      return HttpResponse{-1, "", "", {}, {}};
    }
    HttpResponse r = future.get();
    committer_->Flush();  // any further completion would have run by now
    EXPECT_EQ(calls->load(), 1) << method << " " << target << " answered more than once";
    EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Origin"), "*") << method << " " << target;
    return r;
  }

  // The JSON error body: {"error":"..."} (a non-empty message).
  static void ExpectJsonError(const HttpResponse& r, int status) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(r.body.rfind("{\"error\":\"", 0), 0u) << r.body;
    EXPECT_GT(r.body.size(), std::string("{\"error\":\"\"}").size()) << r.body;
    EXPECT_EQ(r.body.back(), '}') << r.body;
  }

  std::string TrackPath() const { return "/app/" + app_id_ + "/track"; }

  // The value of one counter line of /metrics, or -1.
  int64_t Metric(const std::string& name) {
    HttpResponse r = Call("GET", "/metrics");
    const std::string key = "\n" + name + " ";
    size_t pos = r.body.find(key);
    if (pos == std::string::npos) return -1;
    return std::stoll(r.body.substr(pos + key.size()));
  }

  TempDir dir_;
  std::string app_id_;
  IngestCounters counters_;
  std::unique_ptr<AppRegistry> registry_;
  std::unique_ptr<EventStore> store_;
  std::unique_ptr<FaultInjectingEventStore> fault_;
  std::unique_ptr<GroupCommitter> committer_;
  std::unique_ptr<Ingestor> ingestor_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterTest, HealthzIsOkWhileStorageIsWritable) {
  HttpResponse r = Call("GET", "/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"status\":\"ok\",\"ready\":true}");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(Call("HEAD", "/healthz").status, 200);
  ExpectJsonError(Call("POST", "/healthz"), 405);
}

TEST_F(RouterTest, HealthzIs503WhenStorageFails) {
  fault_->FailAppends(Status::Unavailable("disk full"));
  HttpResponse track = Call("POST", TrackPath(), kTwoEvents);
  ExpectJsonError(track, 503);  // not acked: the SDK keeps its events
  HttpResponse health = Call("GET", "/healthz");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(health.content_type, "application/json");
  EXPECT_NE(health.body.find("\"error\""), std::string::npos) << health.body;

  fault_->ClearFaults();
  HttpResponse retry = Call("POST", TrackPath(), kTwoEvents);
  EXPECT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(Call("GET", "/healthz").status, 200);
}

TEST_F(RouterTest, PreflightAllowsAnyOrigin) {
  HttpResponse r = Call("OPTIONS", TrackPath(), "",
                        {{"origin", "https://example.com"},
                         {"access-control-request-method", "POST"},
                         {"access-control-request-headers", "content-type, x-custom"}});
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  EXPECT_NE(HeaderOf(r, "Access-Control-Allow-Methods").find("POST"), std::string::npos);
  EXPECT_NE(HeaderOf(r, "Access-Control-Allow-Methods").find("GET"), std::string::npos);
  EXPECT_EQ(HeaderOf(r, "Access-Control-Allow-Headers"), "content-type, x-custom");
  EXPECT_NE(HeaderOf(r, "Access-Control-Max-Age"), "(absent)");

  HttpResponse plain = Call("OPTIONS", "/api/v1/apps");
  EXPECT_EQ(plain.status, 204);
  EXPECT_NE(HeaderOf(plain, "Access-Control-Allow-Headers").find("Authorization"),
            std::string::npos);
}

TEST_F(RouterTest, TrackAcksAfterTheCommit) {
  HttpResponse r = Call("POST", TrackPath(), kTwoEvents);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"reportedIds\":[1,\"two\"]}");
  EXPECT_EQ(counters_.events_stored.load(), 2u);
  // A resend is acked again and not stored twice.
  HttpResponse again = Call("POST", TrackPath() + "?v=4", kTwoEvents);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body, "{\"reportedIds\":[1,\"two\"]}");
  EXPECT_EQ(counters_.events_stored.load(), 2u);
  EXPECT_EQ(counters_.events_duplicate.load(), 2u);
  committer_->Stop();
  auto stats = store_->Stats(app_id_);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->events, 2);
}

TEST_F(RouterTest, TrackStampsTheClientCountryOnEvents) {
  ASSERT_EQ(Call("POST", TrackPath(), kTwoEvents, {}, "DE").status, 200);
  committer_->Stop();
  std::vector<Event> events;
  ASSERT_TRUE(store_->Export(app_id_, [&](const Event& e) { events.push_back(e); }).ok());
  ASSERT_EQ(events.size(), 2u);
  for (const Event& e : events) {
    EXPECT_EQ(e.country, "DE");
    EXPECT_EQ(e.app_id, app_id_);
    EXPECT_EQ(e.device_id, "D1");
  }
}

TEST_F(RouterTest, AppCreatedByTheCliIsTrackableAfterReload) {
  auto cli = OpenSqliteCatalog(dir_.path());
  ASSERT_TRUE(cli.ok());
  auto cred = (*cli)->CreateApp("later");
  ASSERT_TRUE(cred.ok());
  const std::string path = "/app/" + cred->app_id + "/track";
  ExpectJsonError(Call("POST", path, kTwoEvents), 404);  // not loaded yet
  ASSERT_TRUE(registry_->Reload().ok());
  HttpResponse r = Call("POST", path, kTwoEvents);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(router_->AppExists(cred->app_id));
}

TEST_F(RouterTest, TrackWithOnlyInvalidEventsIsAckedWithoutACommit) {
  HttpResponse r = Call("POST", TrackPath(), R"({"data":[{"id":5,"type":"event","name":"E"}]})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"reportedIds\":[5]}");
  EXPECT_EQ(counters_.events_invalid.load(), 1u);
  EXPECT_EQ(fault_->append_calls(), 0);
}

TEST_F(RouterTest, TrackErrors) {
  ExpectJsonError(Call("POST", "/app/000000000000000000000000/track", kTwoEvents), 404);
  ExpectJsonError(Call("GET", TrackPath()), 405);
  ExpectJsonError(Call("PUT", TrackPath(), kTwoEvents), 405);
  ExpectJsonError(Call("POST", TrackPath(), ""), 400);
  ExpectJsonError(Call("POST", TrackPath(), "{not json"), 400);
  ExpectJsonError(Call("POST", TrackPath(), R"({"events":[]})"), 400);
  std::string too_many = "{\"data\":[";
  for (int i = 0; i <= 10000; ++i) too_many += i ? ",{}" : "{}";
  too_many += "]}";
  ExpectJsonError(Call("POST", TrackPath(), too_many), 413);
  EXPECT_EQ(fault_->append_calls(), 0);
}

// A tracking request from client `key` carrying one event with id `id`.
HttpRequest TrackFrom(const std::string& path, const std::string& key, int id) {
  HttpRequest req;
  req.method = "POST";
  req.target = path;
  req.client_key = key;
  req.body = R"({"data":[{"type":"event","name":"E","id":)" + std::to_string(id) +
             R"(,"date":1795685879840,"sessionId":1,"deviceId":"D-)" + key + "\"}]}";
  return req;
}

TEST_F(RouterTest, TrackOverTheRateIs429AndItsEventsAreNotStored) {
  RateLimiter::Clock::time_point now = RateLimiter::Clock::time_point() + std::chrono::hours(1);
  RateLimiter limiter(RateLimiterOptions{1, 2, 1000}, [&now] { return now; });
  ServerCounters server_counters;
  Router limited(RouterDeps{registry_.get(), ingestor_.get(), committer_.get(), &counters_, nullptr,
                            &limiter, &server_counters});
  EXPECT_EQ(Send(TrackFrom(TrackPath(), "A", 1), &limited).status, 200);
  EXPECT_EQ(Send(TrackFrom(TrackPath(), "A", 2), &limited).status, 200);
  HttpResponse refused = Send(TrackFrom(TrackPath(), "A", 3), &limited);
  ExpectJsonError(refused, 429);
  EXPECT_EQ(HeaderOf(refused, "Retry-After"), "1");
  // Another client is not affected.
  for (int id = 1; id <= 2; ++id) {
    HttpResponse other = Send(TrackFrom(TrackPath(), "B", id), &limited);
    EXPECT_EQ(other.status, 200);
    EXPECT_EQ(other.body, "{\"reportedIds\":[" + std::to_string(id) + "]}");
  }
  // A second later the first client has earned one more request.
  now += std::chrono::seconds(1);
  EXPECT_EQ(Send(TrackFrom(TrackPath(), "A", 4), &limited).status, 200);
  EXPECT_EQ(Send(TrackFrom(TrackPath(), "A", 5), &limited).status, 429);
  // Requests without a client key (no address known) are not limited.
  for (int id = 10; id < 15; ++id) {
    EXPECT_EQ(Send(TrackFrom(TrackPath(), "", id), &limited).status, 200);
  }
  EXPECT_EQ(server_counters.tracking_rate_limited.load(), 2u);
  committer_->Stop();
  std::vector<int64_t> ids;
  Status exported = store_->Export(app_id_, [&](const Event& e) {
    if (e.device_id == "D-A") ids.push_back(std::stoll(e.client_id));
  });
  ASSERT_TRUE(exported.ok()) << exported.ToString();
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2, 4}));
}

TEST_F(RouterTest, TrackIs503WhileTheStorageBacklogIsFull) {
  // A committer whose backlog holds one event, over a store that stalls.
  GroupCommitter::Options opts;
  opts.max_pending_events = 1;
  opts.probe_interval_ms = 3600 * 1000;
  IngestCounters counters;
  GroupCommitter committer(fault_.get(), opts, &counters);
  Ingestor ingestor(&committer, &counters, IngestLimits{});
  Router stalled(RouterDeps{registry_.get(), &ingestor, &committer, &counters});
  fault_->HoldAppends();
  // Whatever fails below, the writer must not stay stalled (Stop would wait for it).
  struct Release {
    FaultInjectingEventStore* store;
    ~Release() { store->ReleaseAppends(); }
  } release{fault_.get()};

  auto send_async = [&](int id) {
    auto promise = std::make_shared<std::promise<HttpResponse>>();
    auto future = promise->get_future();
    stalled.Handle(TrackFrom(TrackPath(), "", id),
                   [promise](HttpResponse r) { promise->set_value(std::move(r)); });
    return future;
  };
  auto first = send_async(1);  // taken by the writer, which stalls in Append
  fault_->WaitUntilAppendHeld();
  auto second = send_async(2);  // waits in the backlog
  // The backlog is full: refused at once, with a hint when to come back.
  auto third = send_async(3);
  ASSERT_EQ(third.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  HttpResponse refused = third.get();
  ExpectJsonError(refused, 503);
  EXPECT_EQ(HeaderOf(refused, "Retry-After"), "1");
  EXPECT_EQ(HeaderOf(refused, "Access-Control-Allow-Origin"), "*");
  EXPECT_EQ(counters.rejected_backlog.load(), 1u);
  EXPECT_EQ(second.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout)
      << "acked before its commit";

  fault_->ReleaseAppends();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  ASSERT_EQ(second.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(first.get().body, "{\"reportedIds\":[1]}");
  EXPECT_EQ(second.get().body, "{\"reportedIds\":[2]}");
  committer.Stop();
}

TEST(TooManyRequestsTest, IsJsonWithRetryAfterInWholeSeconds) {
  HttpResponse r = TooManyRequests("slow down", 3);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"error\":\"slow down; retry after 3 s\"}");
  EXPECT_EQ(HeaderOf(r, "Retry-After"), "3");
  EXPECT_EQ(HeaderOf(TooManyRequests("x", 0), "Retry-After"), "1");
}

TEST_F(RouterTest, UnknownPathsAre404Json) {
  for (const char* path : {"/nope", "/app", "/app/x", "/app/x/track/more", "/healthz/x",
                           "/api/v1/apps"}) {  // no API handler wired here
    SCOPED_TRACE(path);
    ExpectJsonError(Call("GET", path), 404);
  }
  HttpResponse root = Call("GET", "/");
  EXPECT_EQ(root.status, 200);
}

TEST_F(RouterTest, MetricsCountersFollowTraffic) {
  HttpResponse before = Call("GET", "/metrics");
  EXPECT_EQ(before.status, 200);
  EXPECT_EQ(before.content_type.rfind("text/plain", 0), 0u) << before.content_type;
  EXPECT_NE(before.body.find("# TYPE nucleon_events_stored_total counter"), std::string::npos);
  EXPECT_EQ(Metric("nucleon_batches_total"), 0);
  EXPECT_EQ(Metric("nucleon_events_stored_total"), 0);

  ASSERT_EQ(Call("POST", TrackPath(), kTwoEvents).status, 200);
  EXPECT_EQ(Metric("nucleon_batches_total"), 1);
  EXPECT_EQ(Metric("nucleon_events_received_total"), 2);
  EXPECT_EQ(Metric("nucleon_events_stored_total"), 2);
  EXPECT_EQ(Metric("nucleon_commits_total"), 1);

  ASSERT_EQ(
      Call(
          "POST", TrackPath(),
          R"({"data":[{"id":1,"type":"init","date":1795685879840,"sessionId":490330,"deviceId":"D1"},)"
          R"({"type":"heartbeat","deviceId":"D1"},{"id":9}]})")
          .status,
      200);
  EXPECT_EQ(Metric("nucleon_batches_total"), 2);
  EXPECT_EQ(Metric("nucleon_events_received_total"), 5);
  EXPECT_EQ(Metric("nucleon_events_stored_total"), 2);
  EXPECT_EQ(Metric("nucleon_events_duplicate_total"), 1);
  EXPECT_EQ(Metric("nucleon_heartbeats_total"), 1);
  EXPECT_EQ(Metric("nucleon_events_invalid_total"), 1);

  fault_->FailAppends(Status::Unavailable("disk full"), 1);
  ASSERT_EQ(Call("POST", TrackPath(), kTwoEvents).status, 503);
  EXPECT_EQ(Metric("nucleon_commit_failures_total"), 1);
  ExpectJsonError(Call("POST", "/metrics"), 405);
}

TEST(TrackingSocketAppTest, AcceptsTheSdkPaths) {
  const std::pair<const char*, const char*> accepted[] = {
      {"/app/abc123/track", "abc123"},
      {"/app/abc123/track?x=1", "abc123"},
      {"/abc123/", "abc123"},
      {"/abc123", "abc123"},
      {"/abc123/?v=2", "abc123"},
      {"/app/app456/track", "app456"},
      {"/app/My_App-1/track", "My_App-1"},
  };
  for (const auto& [path, app] : accepted) {
    EXPECT_EQ(Router::TrackingSocketApp(path), std::optional<std::string>(app)) << path;
  }
}

TEST(TrackingSocketAppTest, RejectsEverythingElse) {
  for (const char* path :
       {"/api", "/api/", "/healthz", "/metrics", "/app", "/app/abc123", "/app/abc123/",
        "/app/abc123/other", "/", "", "/a/b", "/abc.123", "/ab%20c", "/app//track"}) {
    EXPECT_EQ(Router::TrackingSocketApp(path), std::nullopt) << path;
  }
  const std::string long_id(65, 'a');
  EXPECT_EQ(Router::TrackingSocketApp("/" + long_id), std::nullopt);
  EXPECT_EQ(Router::TrackingSocketApp("/" + long_id.substr(1)), long_id.substr(1));
}

}  // namespace
}  // namespace nucleon
