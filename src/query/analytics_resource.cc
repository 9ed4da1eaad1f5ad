#include "core/time_util.h"
#include "query/resources.h"

namespace nucleon {

namespace {

constexpr int64_t kDayMs = 86400000;

void WriteDayMap(JsonWriter& w, const std::map<int64_t, int64_t>& days) {
  w.BeginObject();
  for (const auto& [day, n] : days) {
    if (n != 0) w.Key(DayKey(day)).Int(n);
  }
  w.EndObject();
}

void WriteValueCounts(JsonWriter& w, const std::vector<ValueCount>& values) {
  w.BeginArray();
  for (const ValueCount& v : values) {
    w.BeginObject().Key("value").String(v.value).Key("count").Int(v.count).EndObject();
  }
  w.EndArray();
}

void WriteDailyCounts(JsonWriter& w, const DailyCounts& counts) {
  w.BeginObject().Key("data").BeginObject();
  for (const auto& [name, days] : counts) {
    w.Key(name);
    WriteDayMap(w, days);
  }
  w.EndObject().EndObject();
}

}  // namespace

HttpResponse QuickGlanceResource(const ApiDeps& deps, std::string_view app) {
  const int64_t now = deps.now_ms();
  const TimeSpan periods[] = {{now - kDayMs, now - 1}, {now - 2 * kDayMs, now - kDayMs - 1}};
  auto counts = deps.store->QuickGlances(app, periods);
  if (!counts.ok()) return ErrorResponse(counts.status());
  if (counts->size() != 2) return ErrorResponse(Status::Internal("quick glance: missing a period"));
  const QuickGlanceCounts* current = &(*counts)[0];
  const QuickGlanceCounts* previous = &(*counts)[1];
  JsonWriter w;
  w.BeginObject().Key("data").BeginObject();
  w.Key("installs").Int(current->installs);
  w.Key("users").Int(current->users);
  w.Key("appStarts").Int(current->app_starts);
  w.Key("errors").Int(current->errors);
  w.Key("previousInstalls").Int(previous->installs);
  w.Key("previousUsers").Int(previous->users);
  w.Key("previousAppStarts").Int(previous->app_starts);
  w.Key("previousErrors").Int(previous->errors);
  w.EndObject().EndObject();
  return JsonOk(w.Take());
}

HttpResponse DailyResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto d = deps.store->Daily(app, *range);
  if (!d.ok()) return ErrorResponse(d.status());
  JsonWriter w;
  w.BeginObject().Key("data").BeginObject();
  w.Key("totalNumbers")
      .BeginObject()
      .Key("users")
      .Int(d->users)
      .Key("installs")
      .Int(d->installs)
      .EndObject();
  w.Key("usage");
  WriteDayMap(w, d->usage);
  w.Key("newUsers");
  WriteDayMap(w, d->new_users);
  w.Key("activeUsers");
  WriteDayMap(w, d->active_users);
  std::map<int64_t, int64_t> non_new;
  for (const auto& [day, active] : d->active_users) {
    auto it = d->new_users.find(day);
    const int64_t n = active - (it == d->new_users.end() ? 0 : it->second);
    if (n > 0) non_new[day] = n;
  }
  w.Key("nonNewUsers");
  WriteDayMap(w, non_new);
  w.Key("hours").BeginObject();
  for (const auto& [day, hours] : d->hours) {
    w.Key(DayKey(day)).BeginArray();
    for (int64_t h : hours) w.Int(h);
    w.EndArray();
  }
  w.EndObject();
  w.Key("platforms");
  WriteValueCounts(w, d->platforms);
  w.Key("ram");
  WriteValueCounts(w, d->ram);
  w.Key("languages");
  WriteValueCounts(w, d->languages);
  w.Key("versions");
  WriteValueCounts(w, d->versions);
  w.Key("countries");
  WriteValueCounts(w, d->countries);
  w.Key("avgSessionDuration").BeginObject();
  for (const auto& [day, avg] : d->avg_session_duration) w.Key(DayKey(day)).Double(avg);
  w.EndObject();
  w.EndObject().EndObject();
  return JsonOk(w.Take());
}

HttpResponse EventsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req,
                            bool errors) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto counts = deps.store->EventCounts(app, *range, errors);
  if (!counts.ok()) return ErrorResponse(counts.status());
  JsonWriter w;
  WriteDailyCounts(w, *counts);
  return JsonOk(w.Take());
}

HttpResponse ErrorGroupsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto groups = deps.store->ErrorGroups(app, *range);
  if (!groups.ok()) return ErrorResponse(groups.status());
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (const ErrorGroup& g : *groups) {
    w.BeginObject();
    w.Key("name").String(g.name);
    w.Key("count").Int(g.count);
    w.Key("users").Int(g.users);
    w.Key("firstSeen").String(FormatIsoMs(g.first_ms));
    w.Key("lastSeen").String(FormatIsoMs(g.last_ms));
    w.Key("sample").BeginObject();
    w.Key("time").String(FormatIsoMs(g.sample_ms));
    w.Key("userId").String(g.sample_user);
    w.Key("sessionId").String(g.sample_session);
    w.Key("deviceId").String(g.sample_device);
    w.Key("message").String(g.message);
    w.Key("stack").String(g.stack);
    w.EndObject();
    w.EndObject();
  }
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

HttpResponse SessionsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto days = deps.store->Sessions(app, *range);
  if (!days.ok()) return ErrorResponse(days.status());
  JsonWriter w;
  w.BeginObject().Key("data").BeginObject();
  w.Key("sessions").BeginObject();
  for (const auto& [day, s] : *days) w.Key(DayKey(day)).Int(s.sessions);
  w.EndObject();
  w.Key("avgSessionDuration").BeginObject();
  for (const auto& [day, s] : *days) w.Key(DayKey(day)).Double(MeanSessionSeconds(s));
  w.EndObject();
  w.EndObject().EndObject();
  return JsonOk(w.Take());
}

HttpResponse EventPropsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto props = deps.store->EventProps(app, *range);
  if (!props.ok()) return ErrorResponse(props.status());
  JsonWriter w;
  w.BeginObject().Key("data").BeginArray();
  for (const EventPropKeys& p : *props) {
    w.BeginObject().Key("event").String(p.event).Key("keys").BeginArray();
    for (const std::string& k : p.keys) w.String(k);
    w.EndArray().Key("type").String(p.type).EndObject();
  }
  w.EndArray().EndObject();
  return JsonOk(w.Take());
}

HttpResponse EventAttributeResource(const ApiDeps& deps, std::string_view app,
                                    const ApiRequest& req, std::string_view event,
                                    std::string_view attr) {
  auto range = RangeParams(req);
  if (!range.ok()) return ErrorResponse(range.status());
  auto values = deps.store->EventAttribute(app, *range, event, attr);
  if (!values.ok()) return ErrorResponse(values.status());
  JsonWriter w;
  w.BeginObject().Key("data");
  WriteValueCounts(w, *values);
  w.EndObject();
  return JsonOk(w.Take());
}

}  // namespace nucleon
