#include "query/api.h"

#include "core/log.h"
#include "query/resources.h"

namespace nucleon {

namespace {

enum class Endpoint {
  kNone,
  kQuickGlance,
  kDaily,
  kEvents,
  kEventProps,
  kEventAttribute,
  kErrors,
  kErrorGroups,
  kSessions,
  kUsers,
  kUser,
  kSessionEvents,
  kLiveEvents,
  kLiveUsersCount,
  kLiveUsers,
  kExport,
};

// Matches the segments after /api/v1/apps/:appId.
Endpoint Match(const std::vector<std::string>& s) {
  const size_t n = s.size();
  if (n == 1 && s[0] == "analytics") return Endpoint::kDaily;
  if (n == 1 && s[0] == "users") return Endpoint::kUsers;
  if (n == 1 && s[0] == "export") return Endpoint::kExport;
  if (n == 2 && s[0] == "users") return Endpoint::kUser;
  if (n == 4 && s[0] == "users" && s[2] == "session") return Endpoint::kSessionEvents;
  if (n >= 2 && s[0] == "analytics") {
    if (n == 2 && s[1] == "quickglance") return Endpoint::kQuickGlance;
    if (n == 2 && s[1] == "events") return Endpoint::kEvents;
    if (n == 2 && s[1] == "eventsprops") return Endpoint::kEventProps;
    if (n == 2 && s[1] == "errors") return Endpoint::kErrors;
    if (n == 2 && s[1] == "sessions") return Endpoint::kSessions;
    if (n == 4 && s[1] == "events") return Endpoint::kEventAttribute;
    if (n == 3 && s[1] == "errors" && s[2] == "groups") return Endpoint::kErrorGroups;
  }
  if (n == 2 && s[0] == "live" && s[1] == "events") return Endpoint::kLiveEvents;
  if (n == 2 && s[0] == "live" && s[1] == "users") return Endpoint::kLiveUsers;
  if (n == 3 && s[0] == "live" && s[1] == "users" && s[2] == "count")
    return Endpoint::kLiveUsersCount;
  return Endpoint::kNone;
}

}  // namespace

void Api::Handle(const HttpRequest& request, std::string_view path, Respond inner) {
  // A store that is not ready (starting) or unavailable answers 503: tell the
  // client when to come back.
  Respond respond = [inner = std::move(inner)](HttpResponse r) {
    if (r.status == 503) {
      bool has = false;
      for (const auto& [name, value] : r.headers) has = has || name == "Retry-After";
      if (!has) r.headers.emplace_back("Retry-After", "1");
    }
    inner(std::move(r));
  };
  try {
    auto parsed = ParseApiRequest(request);
    if (!parsed.ok()) return respond(ErrorResponse(parsed.status()));
    const ApiRequest& req = *parsed;
    const auto& seg = req.segments;

    if (seg.size() == 1 && seg[0] == "openapi.json") {
      if (request.method != "GET") {
        return respond(ErrorResponse(Status::MethodNotAllowed("use GET for " + std::string(path))));
      }
      return respond(JsonOk(deps_.openapi_json));
    }
    if (seg.size() < 3 || seg[0] != "apps") {
      return respond(ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path))));
    }
    const std::string& app = seg[1];
    const std::vector<std::string> rest(seg.begin() + 2, seg.end());
    const Endpoint endpoint = Match(rest);
    if (endpoint == Endpoint::kNone) {
      return respond(ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path))));
    }
    if (endpoint == Endpoint::kExport && request.method != "GET") {
      return respond(ErrorResponse(Status::MethodNotAllowed("use GET for " + std::string(path))));
    }
    const bool is_delete = request.method == "DELETE";
    const bool is_read = request.method == "GET" || request.method == "POST";
    if (!(is_read || (is_delete && endpoint == Endpoint::kUser))) {
      return respond(ErrorResponse(Status::MethodNotAllowed(
          (endpoint == Endpoint::kUser ? "use GET, POST or DELETE for " : "use GET or POST for ") +
          std::string(path))));
    }

    const std::string token = TokenOf(request, req);
    // Without a token, the dashboard's session cookie may authorise the call.
    std::optional<Status> session;
    if (token.empty() && deps_.session_access) {
      session = deps_.session_access(request, app, is_delete);
      if (session && !session->ok()) return respond(ErrorResponse(*session));
    }
    if (token.empty() && !session) {
      return respond(ErrorResponse(
          Status::Unauthenticated("missing API token: send it in the Authorization header")));
    }
    const std::string granted = session ? app : deps_.app_for_token(token);
    if (granted.empty())
      return respond(ErrorResponse(Status::Unauthenticated("unknown API token")));
    // An app the token does not grant looks exactly like an app that does not exist.
    if (granted != app) return respond(ErrorResponse(Status::NotFound("unknown app " + app)));
    if (!session && deps_.throttle) {
      if (const int wait = deps_.throttle(token); wait > 0) {
        HttpResponse r = ErrorResponse(Status::RateLimited(
            "too many requests with this token; retry after " + std::to_string(wait) + " s"));
        r.headers.emplace_back("Retry-After", std::to_string(wait));
        return respond(std::move(r));
      }
    }

    switch (endpoint) {
      case Endpoint::kQuickGlance:
        return respond(QuickGlanceResource(deps_, app));
      case Endpoint::kDaily:
        return respond(DailyResource(deps_, app, req));
      case Endpoint::kEvents:
        return respond(EventsResource(deps_, app, req, false));
      case Endpoint::kErrors:
        return respond(EventsResource(deps_, app, req, true));
      case Endpoint::kErrorGroups:
        return respond(ErrorGroupsResource(deps_, app, req));
      case Endpoint::kSessions:
        return respond(SessionsResource(deps_, app, req));
      case Endpoint::kEventProps:
        return respond(EventPropsResource(deps_, app, req));
      case Endpoint::kEventAttribute:
        return respond(EventAttributeResource(deps_, app, req, rest[2], rest[3]));
      case Endpoint::kUsers:
        return respond(UsersResource(deps_, app, req));
      case Endpoint::kUser:
        if (is_delete) return DeleteUserResource(deps_, app, rest[1], std::move(respond));
        return respond(UserResource(deps_, app, rest[1]));
      case Endpoint::kSessionEvents:
        return respond(SessionEventsResource(deps_, app, req, rest[1], rest[3]));
      case Endpoint::kLiveEvents:
        return respond(LiveEventsResource(deps_, app, req));
      case Endpoint::kLiveUsersCount:
        return respond(LiveUsersCountResource(deps_, app));
      case Endpoint::kLiveUsers:
        return respond(LiveUsersResource(deps_, app));
      case Endpoint::kExport:
        return respond(ExportResource(deps_, app, req, request));
      case Endpoint::kNone:
        break;
    }
    respond(ErrorResponse(Status::NotFound("no such endpoint: " + std::string(path))));
  } catch (const std::exception& ex) {
    LogError(std::string("API request failed: ") + ex.what());
    respond(ErrorResponse(Status::Internal("internal error")));
  }
}

}  // namespace nucleon
