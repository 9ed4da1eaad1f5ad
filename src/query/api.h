// The Nucleus API v1 under /api/v1: routing, authentication, parameters, and
// one resource file per endpoint family (analytics, users, live) that asks the
// store and shapes the JSON exactly as the reference shows it.
// Thread-safe: Handle runs on any network thread; a user deletion runs on the
// writer thread through `run_exclusive`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/http_types.h"
#include "live/live_state.h"
#include "store/event_store.h"

namespace nucleon {

struct ApiDeps {
  EventStore* store = nullptr;
  LiveState* live = nullptr;
  // The app a token grants, or "" when the token is unknown or revoked.
  std::function<std::string(std::string_view token)> app_for_token;
  // Runs a task on the writer thread, ordered with ingestion; `done` gets its status.
  std::function<Status(std::function<Status()> task, std::function<void(const Status&)> done)>
      run_exclusive;
  std::function<int64_t()> now_ms;
  // Per-token rate limit, asked once a token is known to grant the app: 0
  // serves the request, n > 0 answers 429 with Retry-After n. Absent: no limit.
  std::function<int(std::string_view token)> throttle;
  std::string openapi_json;  // served at /api/v1/openapi.json
  // The dashboard's sessions: for a request without a token, nullopt when it
  // carries no session cookie either (a 401 then); else Ok to serve it, or
  // the error to answer. Absent: tokens only.
  std::function<std::optional<Status>(const HttpRequest& request, const std::string& app,
                                      bool is_delete)>
      session_access;
};

class Api final : public HttpHandler {
 public:
  explicit Api(ApiDeps deps) : deps_(std::move(deps)) {}
  void Handle(const HttpRequest& request, std::string_view path, Respond respond) override;

 private:
  ApiDeps deps_;
};

}  // namespace nucleon
