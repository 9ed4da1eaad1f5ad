// The answers a store gives to the API, before they are shaped as JSON: one
// struct per question, backend-neutral, with every number already computed as
// semantics.md defines it. Plain values; thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/event.h"

namespace nucleon {

// An inclusive range of event times in milliseconds, and the local time zone
// (minutes east of UTC) that day keys are computed in.
struct QueryRange {
  int64_t from_ms = 0;
  int64_t to_ms = 0;
  int utc_offset_min = 0;
};

struct ValueCount {
  std::string value;
  int64_t count = 0;
};

struct QuickGlanceCounts {
  int64_t installs = 0, users = 0, app_starts = 0, errors = 0;
};

// An inclusive span of time, in ms.
struct TimeSpan {
  int64_t from_ms = 0, to_ms = 0;
};

// Day numbers are local days since 1970-01-01 in the query's time zone.
struct DailyAnalytics {
  int64_t users = 0;
  int64_t installs = 0;
  std::map<int64_t, int64_t> usage, new_users, active_users;
  std::map<int64_t, std::array<int64_t, 24>> hours;
  std::vector<ValueCount> platforms, languages, versions, countries, ram;
  std::map<int64_t, double> avg_session_duration;
};

using DailyCounts = std::map<std::string, std::map<int64_t, int64_t>>;  // name -> day -> count

// The sessions that started on one local day (semantics.md §5.8): how many,
// and the sum of their durations in whole seconds (§3.3), whose mean is that
// day's avgSessionDuration (§5.2).
struct SessionDay {
  int64_t sessions = 0;
  int64_t seconds = 0;
};
using SessionDays = std::map<int64_t, SessionDay>;  // local day -> its sessions

// A day's mean session duration: the quotient DailyAnalytics keeps.
double MeanSessionSeconds(const SessionDay& day);

// One error group of the errors details (semantics.md §5.7): the `error`
// events in range with one name.
struct ErrorGroup {
  std::string name;
  int64_t count = 0;
  int64_t users = 0;  // distinct user keys among them
  int64_t first_ms = 0, last_ms = 0;
  // The latest of them (equal times: the one stored last): whose, where, and
  // the texts of its `message` and `stack` properties ("" when absent).
  int64_t sample_ms = 0;
  std::string sample_user, sample_session, sample_device, message, stack;
};

// Most frequent first; equal counts: name in byte order.
void SortErrorGroups(std::vector<ErrorGroup>* groups);

struct EventPropKeys {
  std::string event;
  std::vector<std::string> keys;
  std::string type;  // "string", "number", "boolean"
};

struct DeviceSummary {
  std::string device_id;
  int64_t last_seen_ms = 0;
  std::optional<std::string> platform, os_version, version;
};

struct UserSummary {
  std::string id;  // opaque, stable: see UserDbId
  std::string user_key;
  int64_t created_ms = 0;
  int64_t last_seen_ms = 0;
  std::vector<DeviceSummary> devices;
  std::vector<std::pair<std::string, std::string>> props;  // key -> JSON value text
};

struct UserList {
  int64_t total = 0;
  std::vector<UserSummary> users;
};

struct SessionSummary {
  std::string session_id;
  std::string device_id;
  int64_t start_ms = 0, end_ms = 0;
  int64_t actions = 0, errors = 0;
};

struct UserDetails {
  UserSummary user;
  std::vector<SessionSummary> sessions;
};

// An event as the session-events and live-events endpoints show it: the
// stored event plus its session's context.
struct EventView {
  Event event;  // context fields already filled from the session's init
  bool first_time = false;
};

struct LiveDevice {
  std::string user_key;
  std::string device_id;
  std::optional<std::string> platform, os_version, country;
  int64_t last_seen_ms = 0;
};

// Completes an event's missing context fields (platform, OS version,
// locale, version, module version, arch, country, RAM) from its session's
// init context (semantics.md §6.3). The same in every backend.
void CompleteFromInitContext(const Event& init_context, Event* e);

// The opaque user id shown as `_id`/`userDbId`: the first 24 hex characters of
// SHA-256(appId + "/" + userKey). The same on every backend.
std::string UserDbId(std::string_view app_id, std::string_view user_key);
// The same id as its 12 bytes, for what holds many of them in memory, and
// back to the text UserDbId gives: UserDbIdText(UserDbIdOf(a, u)) == UserDbId(a, u).
using UserDbIdBytes = std::array<uint8_t, 12>;
UserDbIdBytes UserDbIdOf(std::string_view app_id, std::string_view user_key);
std::string UserDbIdText(const UserDbIdBytes& id);

}  // namespace nucleon
