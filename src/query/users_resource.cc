#include <memory>

#include "core/normalize.h"
#include "core/time_util.h"
#include "query/resources.h"

namespace nucleon {

namespace {

constexpr size_t kMaxSearchBytes = 256;

void WriteUser(JsonWriter& w, const UserSummary& u, std::string_view app, bool details) {
  w.BeginObject();
  w.Key("_id").String(u.id);
  if (details) w.Key("appId").String(app);
  w.Key("userId").String(u.user_key);
  if (details) w.Key("__v").Int(0);
  w.Key("createdAt").String(FormatIsoMs(u.created_ms));
  w.Key("lastSeen").String(FormatIsoMs(u.last_seen_ms));
  w.Key("devices").BeginArray();
  for (const DeviceSummary& d : u.devices) {
    w.BeginObject();
    w.Key("_id").String(d.device_id);
    w.Key("lastSeen").String(FormatIsoMs(d.last_seen_ms));
    w.Key("platform").OptString(d.platform);
    w.Key("osVersion").OptString(d.os_version);
    w.Key("version").OptString(d.version);
    w.EndObject();
  }
  w.EndArray();
  w.Key("props").BeginObject();
  for (const auto& [k, v] : u.props) w.Key(k).Raw(v);
  w.EndObject();
  if (details) w.Key("updatedAt").String(FormatIsoMs(u.last_seen_ms));
  w.EndObject();
}

}  // namespace

void WriteEventView(JsonWriter& w, const EventView& view) {
  const Event& e = view.event;
  w.BeginObject();
  w.Key("app_id").String(e.app_id);
  w.Key("platform").StringOrNull(NormalizePlatform(e.platform));
  w.Key("user_id").String(e.user_key);
  w.Key("machine_id").String(e.device_id);
  w.Key("version").StringOrNull(e.version);
  w.Key("locale").StringOrNull(LanguageOf(e.locale));
  w.Key("renderer").Null();
  w.Key("module_version").StringOrNull(e.module_version);
  w.Key("avail_ram");
  if (e.total_ram && !RamBucket(*e.total_ram).empty()) {
    w.Raw(RamBucket(*e.total_ram));
  } else {
    w.Null();
  }
  w.Key("type").String(EventTypeName(e.type));
  w.Key("time").String(FormatIsoMs(e.time_ms));
  w.Key("country").StringOrNull(e.country);
  w.Key("arch").StringOrNull(e.arch);
  w.Key("first_time").Bool(view.first_time);
  w.Key("session_id").String(e.session_id);
  w.Key("error_hash").StringOrNull(e.error_hash);
  w.Key("os_version").StringOrNull(e.os_version);
  w.Key("data").Raw(e.payload_json.empty() ? "{}" : e.payload_json);
  w.Key("duration").Null();
  w.Key("name").StringOrNull(e.name);
  w.EndObject();
}

HttpResponse UsersResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto page = IntParam(req, "page", 1, 1, INT32_MAX, "an integer of at least 1");
  if (!page.ok()) return ErrorResponse(page.status());
  auto limit = IntParam(req, "limit", 100, 1, 1000, "an integer between 1 and 1000");
  if (!limit.ok()) return ErrorResponse(limit.status());
  // Nucleon's extension: only the users whose user key contains `search`.
  std::string search;
  if (auto it = req.params.find("search"); it != req.params.end()) search = it->second;
  if (search.size() > kMaxSearchBytes) {
    return ErrorResponse(Status::InvalidArgument("search must be at most " +
                                                 std::to_string(kMaxSearchBytes) + " bytes"));
  }
  auto users = deps.store->Users(app, *page, *limit, search);
  if (!users.ok()) return ErrorResponse(users.status());
  JsonWriter w;
  w.BeginObject().Key("total").Int(users->total).Key("data").BeginArray();
  for (const UserSummary& u : users->users) WriteUser(w, u, app, false);
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

HttpResponse UserResource(const ApiDeps& deps, std::string_view app, std::string_view user) {
  auto details = deps.store->User(app, user);
  if (!details.ok()) return ErrorResponse(details.status());
  JsonWriter w;
  w.BeginObject().Key("user");
  WriteUser(w, details->user, app, true);
  w.Key("sessions").BeginArray();
  for (const SessionSummary& s : details->sessions) {
    w.BeginObject();
    w.Key("session").String(s.session_id);
    w.Key("device").String(s.device_id);
    w.Key("start").String(FormatIsoMs(s.start_ms));
    w.Key("end").String(FormatIsoMs(s.end_ms));
    w.Key("actions").Int(s.actions);
    w.Key("errors").Int(s.errors);
    w.EndObject();
  }
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

HttpResponse SessionEventsResource(const ApiDeps& deps, std::string_view app,
                                   const ApiRequest& req, std::string_view user,
                                   std::string_view session) {
  auto device = req.params.find("device");
  auto events = deps.store->SessionEvents(app, user, session,
                                          device == req.params.end() ? "" : device->second);
  if (!events.ok()) return ErrorResponse(events.status());
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (const EventView& v : *events) WriteEventView(w, v);
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

void DeleteUserResource(const ApiDeps& deps, std::string_view app, std::string_view user,
                        Respond respond) {
  auto shared = std::make_shared<Respond>(std::move(respond));
  EventStore* store = deps.store;
  LiveState* live = deps.live;
  std::string app_id(app), user_key(user);
  store->PrepareDeleteUser(app_id, user_key);
  Status st = deps.run_exclusive(
      [store, live, app_id, user_key]() -> Status {
        Status s = store->DeleteUser(app_id, user_key);
        if (s.ok() && live) live->ForgetUser(app_id, user_key);
        return s;
      },
      [shared](const Status& s) {
        if (!s.ok()) return (*shared)(ErrorResponse(s));
        HttpResponse r;
        r.status = 204;
        r.content_type.clear();
        (*shared)(std::move(r));
      });
  if (!st.ok()) (*shared)(ErrorResponse(st));
}

}  // namespace nucleon
