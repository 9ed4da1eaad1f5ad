// Router: every HTTP endpoint that is not a WebSocket upgrade — health,
// metrics, tracking over HTTP, and the API — behind the transport-neutral
// HttpRequest/HttpResponse. The Beast server hands it each parsed request.
// Thread-safe: Handle may run on any network thread concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/http_types.h"
#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "server/app_registry.h"
#include "server/dashboard.h"
#include "server/rate_limiter.h"
#include "store/event_store.h"

namespace nucleon {

// What the limits turned away, shown in /metrics. Any thread.
struct ServerCounters {
  std::atomic<uint64_t> tracking_rate_limited{0};   // HTTP tracking requests answered 429
  std::atomic<uint64_t> api_rate_limited{0};        // API requests answered 429
  std::atomic<uint64_t> connections_refused{0};     // over a connection cap
  std::atomic<uint64_t> slow_requests_closed{0};    // header deadline or minimum body rate missed
  std::atomic<uint64_t> websockets_idle_closed{0};  // tracking WebSockets silent too long
};

struct RouterDeps {
  AppRegistry* apps = nullptr;
  Ingestor* ingestor = nullptr;
  GroupCommitter* committer = nullptr;
  IngestCounters* counters = nullptr;
  HttpHandler* api = nullptr;  // the API under /api/v1; may be absent
  // Per client address (HttpRequest::client_key), for tracking over HTTP; may be absent.
  RateLimiter* tracking_limiter = nullptr;
  ServerCounters* server_counters = nullptr;  // may be absent
  // Whether the API answers yet (shown by /healthz); absent: always.
  std::function<bool()> ready = nullptr;
  // What the store reports about itself, added to /metrics; may be absent.
  std::function<std::vector<StoreMetric>()> store_metrics = nullptr;
  // The web interface: /api/session and the dashboard's files; may be absent.
  Dashboard* dashboard = nullptr;
};

class Router {
 public:
  explicit Router(RouterDeps deps) : deps_(deps) {}

  // Answers `request` through `respond`, exactly once, possibly later on
  // another thread (tracking answers after the commit).
  void Handle(const HttpRequest& request, Respond respond);

  // The app id of a tracking WebSocket path (`/app/:appId/track`, `/:appId/`),
  // or nullopt when `path` is not one.
  static std::optional<std::string> TrackingSocketApp(std::string_view target);

  bool AppExists(std::string_view app_id) const { return deps_.apps->AppExists(app_id); }

 private:
  HttpResponse Metrics() const;
  RouterDeps deps_;
};

// Adds the CORS headers every response carries (tracking is called from any origin).
void AddCorsHeaders(HttpResponse* response);

// 429 {"error": ...} with Retry-After in whole seconds.
HttpResponse TooManyRequests(const std::string& message, int retry_after_seconds);

}  // namespace nucleon
