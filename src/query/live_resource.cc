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
  // Live events come from memory; a store that cannot add their sessions'
  // context now (starting, unreachable) leaves them as they were sent.
  auto views = deps.store->WithSessionContexts(events);
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (size_t i = 0; i < events.size(); ++i) {
    WriteEventView(w, views.ok() ? (*views)[i] : EventView{events[i]});
  }
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
  // Connections that only sent heartbeats: their devices' latest sessions tell
  // the rest, asked for all of them at once.
  std::vector<size_t> missing;
  std::vector<std::string> devices;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].platform.empty() || rows[i].os_version.empty()) {
      missing.push_back(i);
      devices.push_back(rows[i].device_id);
    }
  }
  if (!devices.empty()) {
    auto ctx = deps.store->DeviceContexts(app, devices);
    for (size_t j = 0; ctx.ok() && j < missing.size(); ++j) {
      LiveDeviceRow& row = rows[missing[j]];
      const Event& e = (*ctx)[j].event;
      if (row.platform.empty()) row.platform = e.platform;
      if (row.os_version.empty()) row.os_version = e.os_version;
      if (row.country.empty()) row.country = e.country;
    }
  }
  JsonWriter w;
  w.Reserve(rows.size() * 256);
  w.BeginObject().Key("data").BeginArray();
  for (LiveDeviceRow& row : rows) {
    w.BeginObject();
    w.Key("userDbId").String(row.user_db_id.empty() ? UserDbId(app, row.user_key) : row.user_db_id);
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
