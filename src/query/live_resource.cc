#include <unordered_set>

#include "core/normalize.h"
#include "core/time_util.h"
#include "query/resources.h"

namespace nucleon {

HttpResponse LiveEventsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto limit = IntParam(req, "limit", 100, 1, 1000, "an integer between 1 and 1000");
  if (!limit.ok()) return ErrorResponse(limit.status());
  std::vector<Event> events =
      deps.live->RecentEvents(app, deps.now_ms(), static_cast<size_t>(*limit));
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (const Event& e : events) WriteEventView(w, deps.store->WithSessionContext(e));
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

HttpResponse LiveUsersCountResource(const ApiDeps& deps, std::string_view app) {
  JsonWriter w;
  w.BeginObject().Key("data").Int(deps.live->UserCount(app, deps.now_ms())).EndObject();
  return JsonOk(w.Take());
}

HttpResponse LiveUsersResource(const ApiDeps& deps, std::string_view app) {
  std::vector<LiveDeviceRow> rows = deps.live->Devices(app, deps.now_ms());
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (LiveDeviceRow& row : rows) {
    // A connection that only sent heartbeats: its device's latest session tells the rest.
    if (row.platform.empty() || row.os_version.empty()) {
      auto ctx = deps.store->DeviceContext(app, row.device_id);
      if (ctx.ok()) {
        if (row.platform.empty()) row.platform = ctx->event.platform;
        if (row.os_version.empty()) row.os_version = ctx->event.os_version;
        if (row.country.empty()) row.country = ctx->event.country;
      }
    }
    w.BeginObject();
    w.Key("userDbId").String(UserDbId(app, row.user_key));
    w.Key("userId").String(row.user_key);
    w.Key("deviceId").String(row.device_id);
    w.Key("platform").StringOrNull(NormalizePlatform(row.platform));
    w.Key("osVersion").StringOrNull(row.os_version);
    w.Key("country").StringOrNull(row.country);
    w.Key("lastSeen").String(FormatIsoMs(row.last_seen_ms));
    w.EndObject();
  }
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

}  // namespace nucleon
