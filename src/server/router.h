// Router: every HTTP endpoint that is not a WebSocket upgrade — health,
// metrics, tracking over HTTP, and the API — behind the transport-neutral
// HttpRequest/HttpResponse. The Beast server hands it each parsed request.
// Thread-safe: Handle may run on any network thread concurrently.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ingest/group_committer.h"
#include "ingest/ingestor.h"
#include "server/app_registry.h"
#include "core/http_types.h"

namespace nucleon {

struct RouterDeps {
  AppRegistry* apps = nullptr;
  Ingestor* ingestor = nullptr;
  GroupCommitter* committer = nullptr;
  IngestCounters* counters = nullptr;
  HttpHandler* api = nullptr;  // the API under /api/v1; may be absent
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

}  // namespace nucleon
