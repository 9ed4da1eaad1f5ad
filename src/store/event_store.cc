#include "store/event_store.h"

#include "core/time_util.h"

namespace nucleon {

int RetentionPolicy::DaysFor(std::string_view app_id) const {
  auto it = app_days.find(std::string(app_id));
  return it != app_days.end() && it->second > 0 ? it->second : default_days;
}

int64_t RetentionCutMs(int64_t now_ms, int days) {
  constexpr int64_t kDayMs = 86400000;
  return (FloorDiv(now_ms, kDayMs) - days) * kDayMs;
}

Result<QuickGlanceCounts> EventStore::QuickGlance(std::string_view app_id, int64_t from_ms,
                                                  int64_t to_ms) {
  const TimeSpan period[] = {{from_ms, to_ms}};
  auto counts = QuickGlances(app_id, period);
  if (!counts.ok()) return counts.status();
  if (counts->size() != 1) return Status::Internal("quick glance: no answer for the period");
  return counts->front();
}

Status EventStore::SessionEnds(
    std::string_view app_id,
    const std::function<Status(const std::string&, const std::string&, int64_t)>& sink) {
  constexpr int64_t kPage = 1000;
  for (int64_t page = 1;; ++page) {
    auto users = Users(app_id, page, kPage, "");
    if (!users.ok()) return users.status();
    for (const UserSummary& u : users->users) {
      auto details = User(app_id, u.user_key);
      if (details.status().code() == StatusCode::kNotFound) continue;  // deleted meanwhile
      if (!details.ok()) return details.status();
      for (const SessionSummary& s : details->sessions) {
        NUCLEON_RETURN_IF_ERROR(sink(s.device_id, s.session_id, s.end_ms));
      }
    }
    if (static_cast<int64_t>(users->users.size()) < kPage) return Status::Ok();
  }
}

}  // namespace nucleon
