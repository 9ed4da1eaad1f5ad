#include "server/router.h"

#include <algorithm>
#include <cstdio>
#include <memory>

namespace nucleon {

void AddCorsHeaders(HttpResponse* response) {
  response->headers.emplace_back("Access-Control-Allow-Origin", "*");
}

HttpResponse TooManyRequests(const std::string& message, int retry_after_seconds) {
  const std::string seconds = std::to_string(std::max(1, retry_after_seconds));
  HttpResponse r = ErrorResponse(Status::RateLimited(message + "; retry after " + seconds + " s"));
  r.headers.emplace_back("Retry-After", seconds);
  return r;
}

namespace {

std::string_view PathOf(std::string_view target) {
  size_t q = target.find_first_of("?#");
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// Splits "/a/b/c" into its non-empty segments.
std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    if (end > pos) out.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool ValidAppId(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_')) {
      return false;
    }
  }
  return true;
}

// The app of `POST /app/:appId/track`, or nullopt.
std::optional<std::string> HttpTrackingApp(std::string_view path) {
  auto seg = Segments(path);
  if (seg.size() == 3 && seg[0] == "app" && seg[2] == "track" && ValidAppId(seg[1])) {
    return std::string(seg[1]);
  }
  return std::nullopt;
}

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

std::optional<std::string> Router::TrackingSocketApp(std::string_view target) {
  std::string_view path = PathOf(target);
  if (auto app = HttpTrackingApp(path)) return app;
  auto seg = Segments(path);
  static const std::string_view kReserved[] = {"api", "app", "healthz", "metrics"};
  if (seg.size() == 1 && ValidAppId(seg[0])) {
    for (std::string_view r : kReserved) {
      if (seg[0] == r) return std::nullopt;
    }
    return std::string(seg[0]);
  }
  return std::nullopt;
}

void Router::Handle(const HttpRequest& request, Respond respond) {
  auto finish = [&respond](HttpResponse r) {
    AddCorsHeaders(&r);
    respond(std::move(r));
  };
  const std::string_view path = PathOf(request.target);

  if (request.method == "OPTIONS") {
    // CORS preflight: any origin may track and query (tokens, not cookies, authorise).
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    r.headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    std::string_view asked = request.Header("access-control-request-headers");
    r.headers.emplace_back("Access-Control-Allow-Headers",
                           asked.empty() ? "Content-Type, Authorization" : std::string(asked));
    r.headers.emplace_back("Access-Control-Max-Age", "86400");
    return finish(std::move(r));
  }

  if (path == "/healthz") {
    // HEAD gets the GET answer; the transport leaves the body out.
    if (request.method != "GET" && request.method != "HEAD") {
      return finish(ErrorResponse(Status::MethodNotAllowed("use GET for /healthz")));
    }
    if (deps_.committer->Healthy()) {
      const bool ready = !deps_.ready || deps_.ready();
      return finish(Json(200, ready ? "{\"status\":\"ok\",\"ready\":true}"
                                    : "{\"status\":\"ok\",\"ready\":false}"));
    }
    return finish(Json(503, "{\"status\":\"unavailable\",\"error\":\"storage is not writable\"}"));
  }

  if (path == "/metrics") {
    if (request.method != "GET") {
      return finish(ErrorResponse(Status::MethodNotAllowed("use GET for /metrics")));
    }
    return finish(Metrics());
  }

  if (auto app = HttpTrackingApp(path)) {
    if (request.method != "POST") {
      return finish(ErrorResponse(Status::MethodNotAllowed(
          "use POST (or a WebSocket upgrade) for " + std::string(path))));
    }
    // Before any work on the body: a refused request is neither stored nor acked.
    if (deps_.tracking_limiter && !request.client_key.empty()) {
      RateLimiter::Decision d = deps_.tracking_limiter->Take(request.client_key);
      if (!d.allowed) {
        if (deps_.server_counters) {
          deps_.server_counters->tracking_rate_limited.fetch_add(1, std::memory_order_relaxed);
        }
        return finish(
            TooManyRequests("too many tracking requests from this address", d.retry_after_seconds));
      }
    }
    if (!deps_.apps->AppExists(*app)) {
      return finish(ErrorResponse(Status::NotFound("unknown app " + *app)));
    }
    if (request.body.empty()) {
      return finish(ErrorResponse(Status::InvalidArgument("empty body; expected {\"data\":[...]}")));
    }
    auto shared = std::make_shared<Respond>(std::move(respond));
    deps_.ingestor->Ingest(*app, request.body, request.country, 0,
                           [shared](const Status& st, std::string ack) {
                             HttpResponse r = st.ok() ? Json(200, std::move(ack)) : ErrorResponse(st);
                             // Storage is behind or down: the SDK keeps the events; say when
                             // to come back rather than let it retry at once.
                             if (st.code() == StatusCode::kUnavailable) {
                               r.headers.emplace_back("Retry-After", "1");
                             }
                             AddCorsHeaders(&r);
                             (*shared)(std::move(r));
                           });
    return;
  }

  if (path == "/api/v1" || path.rfind("/api/v1/", 0) == 0) {
    if (deps_.api) {
      auto shared = std::make_shared<Respond>(std::move(respond));
      deps_.api->Handle(request, path, [shared](HttpResponse r) {
        AddCorsHeaders(&r);
        (*shared)(std::move(r));
      });
      return;
    }
  }

  if (deps_.dashboard &&
      (path == "/api/session" || path == "/api/admin" || path.rfind("/api/admin/", 0) == 0 ||
       deps_.dashboard->Serves(request, path))) {
    return deps_.dashboard->Handle(request, path, std::move(respond));
  }

  if (path == "/" && request.method == "GET") {
    return finish(Json(200, "{\"name\":\"nucleon\",\"status\":\"ok\"}"));
  }
  return finish(ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path))));
}

HttpResponse Router::Metrics() const {
  const IngestCounters& c = *deps_.counters;
  std::string out;
  auto line = [&out](const char* name, const char* help, uint64_t v) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += " counter\n";
    out += name;
    out += ' ';
    out += std::to_string(v);
    out += '\n';
  };
  line("nucleon_batches_total", "Tracking messages decoded.", c.batches);
  line("nucleon_events_received_total", "Events received, resends included.", c.events_received);
  line("nucleon_events_stored_total", "Events newly stored.", c.events_stored);
  line("nucleon_events_duplicate_total", "Resent events recognised and not stored again.",
       c.events_duplicate);
  line("nucleon_events_invalid_total", "Invalid events acked and dropped.", c.events_invalid);
  line("nucleon_events_truncated_total", "Events with a name or value cut to its cap.",
       c.events_truncated);
  line("nucleon_heartbeats_total", "Heartbeats received.", c.heartbeats);
  line("nucleon_commits_total", "Durable group commits.", c.commits);
  line("nucleon_commit_failures_total", "Commits that failed (nothing acked).", c.commit_failures);
  line("nucleon_backlog_rejections_total", "Batches refused because storage was behind.",
       c.rejected_backlog);
  if (const ServerCounters* s = deps_.server_counters) {
    line("nucleon_tracking_rate_limited_total", "HTTP tracking requests refused with 429.",
         s->tracking_rate_limited);
    line("nucleon_api_rate_limited_total", "API requests refused with 429.", s->api_rate_limited);
    line("nucleon_connections_refused_total", "Connections refused over a connection cap.",
         s->connections_refused);
    line("nucleon_slow_requests_closed_total",
         "Requests closed for missing the header deadline or the minimum body rate.",
         s->slow_requests_closed);
    line("nucleon_websockets_idle_closed_total", "Tracking WebSockets closed for silence.",
         s->websockets_idle_closed);
  }
  if (deps_.store_metrics) {
    for (const StoreMetric& m : deps_.store_metrics()) {
      char value[32];
      std::snprintf(value, sizeof value, "%.17g", m.value);
      out += "# HELP " + m.name + ' ' + m.help + "\n# TYPE " + m.name +
             (m.counter ? " counter\n" : " gauge\n") + m.name + ' ' + value + '\n';
    }
  }
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = std::move(out);
  return r;
}

}  // namespace nucleon
