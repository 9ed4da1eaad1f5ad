#include "store/analytics_index.h"

#include <algorithm>
#include <array>
#include <iterator>
#include <mutex>

#include "core/crypto.h"
#include "core/normalize.h"
#include "core/time_util.h"
#include "store/payload_props.h"

namespace nucleon {

namespace {
constexpr int64_t kDayMs = 86400000;
constexpr int64_t kHourMs = 3600000;
constexpr std::string_view kInitName = "init";

template <typename Vec>
void Increment(Vec* counts, uint32_t id) {
  for (auto& [k, v] : *counts) {
    if (k == id) {
      ++v;
      return;
    }
  }
  counts->emplace_back(id, 1);
}

void SortValueCounts(std::vector<ValueCount>* v) {
  std::sort(v->begin(), v->end(), [](const ValueCount& a, const ValueCount& b) {
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
}
}  // namespace

std::string UserDbId(std::string_view app_id, std::string_view user_key) {
  std::string material(app_id);
  material.push_back('/');
  material.append(user_key);
  Sha256Digest d = Sha256(material);
  return HexEncode(d.data(), 12);
}

uint32_t Dictionary::Intern(std::string_view s) {
  auto it = ids_.find(s);
  if (it != ids_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(texts_.size());
  texts_.emplace_back(s);
  ids_.emplace(texts_.back(), id);
  return id;
}

uint32_t Dictionary::Find(std::string_view s) const {
  auto it = ids_.find(s);
  return it == ids_.end() ? kMissing : it->second;
}

int64_t TimeIndex::Bucket(int64_t ms) { return FloorDiv(ms, AnalyticsIndex::kBucketMs); }

void TimeIndex::Move(uint32_t id, int64_t old_ms, int64_t new_ms) {
  if (old_ms != kNone) {
    auto it = buckets_.find(Bucket(old_ms));
    if (it != buckets_.end()) {
      auto& v = it->second;
      auto pos = std::find(v.begin(), v.end(), id);
      if (pos != v.end()) {
        *pos = v.back();
        v.pop_back();
      }
      if (v.empty()) buckets_.erase(it);
    }
  }
  if (new_ms != kNone) buckets_[Bucket(new_ms)].push_back(id);
}

void AnalyticsIndex::SetSessionStart(uint32_t row, SessionInfo& s, int64_t start_ms) {
  if (s.filed && s.start_ms == start_ms) return;
  session_starts_.Move(row, s.filed ? s.start_ms : TimeIndex::kNone, start_ms);
  s.filed = true;
  s.start_ms = start_ms;
  UpdateInstall(s.device, row, start_ms);
}

void AnalyticsIndex::UpdateInstall(uint32_t device, uint32_t session, int64_t start_ms) {
  DeviceInfo& d = devices_[device];
  const int64_t before = d.install_start;
  if (start_ms < d.install_start || (start_ms == d.install_start && session < d.install_session)) {
    d.install_start = start_ms;
    d.install_session = session;
  } else if (d.install_session == session && start_ms > d.install_start) {
    // The first session started later than thought: another may be first now.
    d.install_start = INT64_MAX;
    for (uint32_t row : d.sessions) {
      auto it = sessions_.find(row);
      if (it == sessions_.end()) continue;
      const int64_t st = row == session ? start_ms : it->second.start_ms;
      if (st < d.install_start || (st == d.install_start && row < d.install_session)) {
        d.install_start = st;
        d.install_session = row;
      }
    }
  }
  if (d.install_start != before) {
    install_starts_.Move(device, before == INT64_MAX ? TimeIndex::kNone : before, d.install_start);
  }
}

void AnalyticsIndex::AddToBucket(Bucket* b, const IndexEvent& e) {
  b->users.add(e.user);
  b->min_ms = std::min(b->min_ms, e.time_ms);
  b->max_ms = std::max(b->max_ms, e.time_ms);
  std::lock_guard<std::mutex> lock(dict_mu_);
  uint32_t event_id = Dictionary::kMissing;
  switch (e.type) {
    case EventType::kInit: {
      ++b->inits;
      auto dim = [&](Dim d, std::string_view value) {
        if (!value.empty()) b->init_dims.push_back({d, strings_.Intern(value), e.user});
      };
      dim(Dim::kPlatform, NormalizePlatform(e.platform));
      dim(Dim::kLanguage, LanguageOf(e.locale));
      dim(Dim::kVersion, e.version);
      dim(Dim::kCountry, e.country);
      if (e.total_ram) dim(Dim::kRam, RamBucket(*e.total_ram));
      event_id = names_.Intern(kInitName);
      break;
    }
    case EventType::kEvent:
      event_id = names_.Intern(e.name);
      Increment(&b->events, event_id);
      break;
    case EventType::kError:
      Increment(&b->errors, names_.Intern(e.name));
      break;
    default:
      break;
  }
  if (event_id == Dictionary::kMissing || !e.props) return;
  for (const auto& [key, value] : *e.props) {
    std::string& vkey = value_key_scratch_;  // reused: no allocation per value
    vkey.assign(1, static_cast<char>('0' + static_cast<int>(value.kind)));
    vkey += value.text;
    uint32_t vid = values_.Intern(vkey);
    if (vid >= value_kinds_.size()) value_kinds_.resize(vid + 1);
    value_kinds_[vid] = static_cast<uint8_t>(value.kind);
    const uint32_t key_id = keys_.Intern(key);
    uint32_t& count = b->props[(static_cast<uint64_t>(event_id) << 32) | key_id][vid];
    if (count++ == 0) {
      const uint64_t packed = PackPropKey(event_id, key_id, static_cast<uint8_t>(value.kind));
      auto k = std::lower_bound(b->prop_keys.begin(), b->prop_keys.end(), packed);
      if (k == b->prop_keys.end() || *k != packed) b->prop_keys.insert(k, packed);
    }
  }
}

void AnalyticsIndex::Touch(uint32_t user, int64_t t) {
  UserInfo& u = users_[user];
  if (t <= u.last_ms) return;
  u.last_ms = t;
  if (!batching_) return Refile(user);
  if (!u.refile) {
    u.refile = true;
    refile_.push_back(user);
  }
}

void AnalyticsIndex::Refile(uint32_t user) {
  UserInfo& u = users_[user];
  u.refile = false;
  if (u.filed_ms == u.last_ms) return;
  if (u.filed_ms != INT64_MIN) by_last_seen_.erase({u.filed_ms, user});
  u.filed_ms = u.last_ms;
  by_last_seen_.insert({u.last_ms, user});
}

void AnalyticsIndex::Add(const IndexEvent& e) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  AddLocked(e);
}

void AnalyticsIndex::Apply(const std::vector<IndexEvent>& events,
                           const std::vector<SessionUpdate>& sessions) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  batching_ = true;
  for (const IndexEvent& e : events) AddLocked(e);
  for (const SessionUpdate& u : sessions) UpsertSessionLocked(u);
  batching_ = false;
  for (uint32_t user : refile_) Refile(user);
  refile_.clear();
}

namespace {

// Appends `id` unless present. Events arrive session by session, so the last
// element is the likely match: check it before scanning a long list.
void AddOnce(std::vector<uint32_t>* ids, uint32_t id) {
  if (!ids->empty() && ids->back() == id) return;
  if (std::find(ids->begin(), ids->end(), id) == ids->end()) ids->push_back(id);
}

}  // namespace

void AnalyticsIndex::AddLocked(const IndexEvent& e) {
  const int64_t bucket = FloorDiv(e.time_ms, kBucketMs);
  AddToBucket(&buckets_[bucket], e);
  InvalidateDays(bucket);

  DeviceInfo& d = devices_[e.device];
  if (d.key.empty()) {
    d.key = std::string(e.device_key);
    device_rows_.emplace(d.key, e.device);
  }
  AddOnce(&d.sessions, e.session);

  SessionInfo& s = sessions_[e.session];
  if (s.key.empty()) {
    s.key = std::string(e.session_key);
    s.device = e.device;
    s.end_ms = e.time_ms;
    SetSessionStart(e.session, s, e.time_ms);
  }
  ++s.actions;
  if (e.type == EventType::kError) ++s.errors;
  InvalidateDays(FloorDiv(s.start_ms, kBucketMs));
  AddOnce(&s.users, e.user);
  // Context: the init's, else the latest event that carried one.
  const bool carries = !e.platform.empty() || !e.locale.empty() || !e.version.empty();
  const bool is_init = e.type == EventType::kInit;
  if ((is_init && (!s.context_from_init || e.time_ms < s.context_ms)) ||
      (!is_init && carries && !s.context_from_init && (!s.has_context || e.time_ms >= s.context_ms))) {
    std::lock_guard<std::mutex> dl(dict_mu_);
    auto id = [this](std::string_view v) { return v.empty() ? Dictionary::kMissing : strings_.Intern(v); };
    s.has_context = true;
    s.context_from_init = is_init;
    s.context_ms = e.time_ms;
    s.platform = id(e.platform);
    s.os_version = id(e.os_version);
    s.locale = id(e.locale);
    s.version = id(e.version);
    s.module_version = id(e.module_version);
    s.arch = id(e.arch);
    s.country = id(e.country);
    s.total_ram = e.total_ram;
  }

  UserInfo& u = users_[e.user];
  max_user_row_ = std::max(max_user_row_, e.user);
  if (u.key.empty()) {
    u.key = std::string(e.user_key);
    user_rows_.emplace(u.key, e.user);
  }
  if (e.time_ms < u.first_ms) {
    first_seen_.Move(e.user, u.first_ms == INT64_MAX ? TimeIndex::kNone : u.first_ms, e.time_ms);
    u.first_ms = e.time_ms;
  }
  AddOnce(&u.sessions, e.session);
  const bool sets_props = is_init || e.type == EventType::kProps || e.type == EventType::kUserId;
  if (sets_props && e.props) {
    for (const auto& [key, value] : *e.props) {
      auto it = u.props.find(key);
      if (it == u.props.end() || e.time_ms >= it->second.first) {
        u.props[key] = {e.time_ms, PropJson(value)};
      }
    }
  }
  Touch(e.user, std::max(e.time_ms, s.end_ms));
}

void AnalyticsIndex::UpsertSession(uint32_t session, uint32_t device,
                                   std::string_view session_key, int64_t start_ms,
                                   int64_t end_ms) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  UpsertSessionLocked({session, device, session_key, start_ms, end_ms});
}

void AnalyticsIndex::UpsertSessionLocked(const SessionUpdate& u) {
  SessionInfo& s = sessions_[u.session];
  // Cached days hold session durations by start day: drop the old and new one.
  if (s.filed) InvalidateDays(FloorDiv(s.start_ms, kBucketMs));
  InvalidateDays(FloorDiv(u.start_ms, kBucketMs));
  if (s.key.empty()) s.key = std::string(u.key);
  s.device = u.device;
  DeviceInfo& d = devices_[u.device];
  if (std::find(d.sessions.begin(), d.sessions.end(), u.session) == d.sessions.end()) {
    d.sessions.push_back(u.session);
  }
  s.end_ms = u.end_ms;
  SetSessionStart(u.session, s, u.start_ms);
  for (uint32_t user : s.users) Touch(user, u.end_ms);
}

void AnalyticsIndex::Clear() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  buckets_.clear();
  sessions_.clear();
  devices_.clear();
  users_.clear();
  user_rows_.clear();
  max_user_row_ = 0;
  device_rows_.clear();
  by_last_seen_.clear();
  session_starts_.Clear();
  first_seen_.Clear();
  install_starts_.Clear();
  std::lock_guard<std::mutex> cl(day_cache_mu_);
  day_cache_.clear();
}

Status AnalyticsIndex::ForEachBucket(
    int64_t from_ms, int64_t to_ms, int offset_min, const RawSource& raw,
    bool with_props,
    const std::function<void(int64_t hour, const Bucket&, bool stable)>& fn) const {
  if (buckets_.empty() || from_ms > to_ms) return Status::Ok();
  // Nothing exists outside the buckets' span: clamp pathological ranges.
  from_ms = std::max(from_ms, buckets_.begin()->first * kBucketMs);
  to_ms = std::min(to_ms, (buckets_.rbegin()->first + 1) * kBucketMs - 1);
  if (from_ms > to_ms) return Status::Ok();
  const int64_t offset_ms = static_cast<int64_t>(offset_min) * 60000;
  struct Window {
    int64_t hour, lo, hi;
  };
  std::vector<Window> cut;
  // Walk local hours: every piece of a local hour lies in one local day and hour.
  int64_t hour = FloorDiv(from_ms + offset_ms, kHourMs);
  for (;; ++hour) {
    const int64_t lo = std::max(from_ms, hour * kHourMs - offset_ms);
    const int64_t hi = std::min(to_ms, (hour + 1) * kHourMs - offset_ms - 1);
    if (lo > to_ms) break;
    if (lo > hi) continue;
    const int64_t first_full = -FloorDiv(-lo, kBucketMs);  // ceil
    const int64_t last_full = FloorDiv(hi + 1, kBucketMs) - 1;
    if (first_full > last_full) {
      cut.push_back({hour, lo, hi});
      continue;
    }
    if (lo < first_full * kBucketMs) cut.push_back({hour, lo, first_full * kBucketMs - 1});
    for (auto it = buckets_.lower_bound(first_full); it != buckets_.end() && it->first <= last_full;
         ++it) {
      fn(hour, it->second, true);
    }
    if ((last_full + 1) * kBucketMs <= hi) cut.push_back({hour, (last_full + 1) * kBucketMs, hi});
  }
  for (const Window& w : cut) {
    // Skip windows whose bucket holds nothing.
    auto b = buckets_.find(FloorDiv(w.lo, kBucketMs));
    if (b == buckets_.end()) continue;
    // A window that holds every event of its bucket (a range ending now, or
    // starting before the bucket's first event) is the whole bucket.
    if (w.lo <= b->second.min_ms && w.hi >= b->second.max_ms) {
      fn(w.hour, b->second, true);
      continue;
    }
    Bucket piece;
    NUCLEON_RETURN_IF_ERROR(raw(w.lo, w.hi, with_props, [&](const IndexEvent& e) {
      const_cast<AnalyticsIndex*>(this)->AddToBucket(&piece, e);
    }));
    fn(w.hour, piece, false);
  }
  return Status::Ok();
}

Result<QuickGlanceCounts> AnalyticsIndex::QuickGlance(int64_t from_ms, int64_t to_ms,
                                                      const RawSource& raw) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  QuickGlanceCounts c;
  Roaring pieces;
  std::vector<const Roaring*> parts;
  Status st = ForEachBucket(from_ms, to_ms, 0, raw, false,
                            [&](int64_t, const Bucket& b, bool stable) {
    if (stable) parts.push_back(&b.users); else pieces |= b.users;
    c.app_starts += b.inits;
    for (const auto& [name, n] : b.errors) c.errors += n;
  });
  if (!st.ok()) return st;
  parts.push_back(&pieces);
  Roaring users = Roaring::fastunion(parts.size(), parts.data());
  c.users = static_cast<int64_t>(users.cardinality());
  install_starts_.ForRange(from_ms, to_ms, [&](uint32_t device) {
    const int64_t start = devices_.at(device).install_start;
    if (start >= from_ms && start <= to_ms) ++c.installs;
  });
  return c;
}

Result<std::shared_ptr<const AnalyticsIndex::DayAgg>> AnalyticsIndex::BuildDay(
    int64_t from_ms, int64_t to_ms, int offset_min, const RawSource& raw) const {
  auto day = std::make_shared<DayAgg>();
  day->hours.fill(0);
  std::vector<const Roaring*> parts;
  Roaring pieces;
  Status st = ForEachBucket(from_ms, to_ms, offset_min, raw, false,
                            [&](int64_t hour, const Bucket& b, bool stable) {
                              if (stable) parts.push_back(&b.users); else pieces |= b.users;
                              day->usage += b.inits;
                              day->hours[static_cast<size_t>(hour - FloorDiv(hour, 24) * 24)] += b.inits;
                              for (const Bucket::InitDim& d : b.init_dims) {
                                day->dims[static_cast<size_t>(d.dim)][d.value].add(d.user);
                              }
                            });
  if (!st.ok()) return st;
  parts.push_back(&pieces);
  day->users = Roaring::fastunion(parts.size(), parts.data());
  session_starts_.ForRange(from_ms, to_ms, [&](uint32_t row) {
    const SessionInfo& s = sessions_.at(row);
    if (s.actions == 0 || s.start_ms < from_ms || s.start_ms > to_ms) return;
    day->session_seconds += (s.end_ms - s.start_ms) / 1000;
    ++day->sessions;
  });
  return std::shared_ptr<const DayAgg>(std::move(day));
}

void AnalyticsIndex::InvalidateDays(int64_t bucket) const {
  std::lock_guard<std::mutex> lock(day_cache_mu_);
  // Runs for every event ingested: visit each cached offset once (the map is
  // ordered by offset), never every cached day.
  for (auto it = day_cache_.begin(); it != day_cache_.end();) {
    const int offset = it->first.first;
    const int64_t offset_ms = static_cast<int64_t>(offset) * 60000;
    const int64_t first = FloorDiv(bucket * kBucketMs + offset_ms, 86400000);
    const int64_t last = FloorDiv((bucket + 1) * kBucketMs - 1 + offset_ms, 86400000);
    for (int64_t d = first; d <= last; ++d) day_cache_.erase({offset, d});
    it = day_cache_.lower_bound({offset + 1, INT64_MIN});
  }
}

Result<DailyAnalytics> AnalyticsIndex::Daily(const QueryRange& r, const RawSource& raw) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  DailyAnalytics out;
  const int64_t offset_ms = static_cast<int64_t>(r.utc_offset_min) * 60000;
  auto local_day = [offset_ms](int64_t t) { return FloorDiv(t + offset_ms, kDayMs); };
  if (buckets_.empty() || r.from_ms > r.to_ms) return out;
  // Nothing exists outside the buckets' span.
  const int64_t span_from = buckets_.begin()->first * kBucketMs;
  const int64_t span_to = (buckets_.rbegin()->first + 1) * kBucketMs - 1;
  const int64_t from = std::max(r.from_ms, span_from), to = std::min(r.to_ms, span_to);

  // One aggregate per local day. A whole day made of whole buckets (every
  // real time zone) before the newest bucket is cached until an event lands
  // in it; the range's partial first and last days are computed each time.
  const bool aligned = (offset_ms % kBucketMs) == 0;
  const int64_t newest = buckets_.rbegin()->first * kBucketMs;
  std::vector<std::pair<int64_t, std::shared_ptr<const DayAgg>>> days;
  for (int64_t d = local_day(from); from <= to && d <= local_day(to); ++d) {
    const int64_t day_from = d * kDayMs - offset_ms, day_to = (d + 1) * kDayMs - offset_ms - 1;
    const int64_t lo = std::max(from, day_from), hi = std::min(to, day_to);
    const bool whole = aligned && lo == day_from && hi == day_to && day_to < newest;
    std::shared_ptr<const DayAgg> agg;
    if (whole) {
      std::lock_guard<std::mutex> cl(day_cache_mu_);
      auto it = day_cache_.find({r.utc_offset_min, d});
      if (it != day_cache_.end()) agg = it->second;
    }
    if (!agg) {
      auto built = BuildDay(lo, hi, r.utc_offset_min, raw);
      if (!built.ok()) return built.status();
      agg = *built;
      if (whole) {
        std::lock_guard<std::mutex> cl(day_cache_mu_);
        if (day_cache_.size() >= kMaxCachedDays) day_cache_.erase(day_cache_.begin());
        day_cache_[{r.utc_offset_min, d}] = agg;
      }
    }
    days.emplace_back(d, std::move(agg));
  }

  std::vector<const Roaring*> all_users;
  std::array<std::map<uint32_t, std::vector<const Roaring*>>, static_cast<size_t>(Dim::kCount)> dims;
  for (const auto& [d, agg] : days) {
    const int64_t active = static_cast<int64_t>(agg->users.cardinality());
    if (active > 0) out.active_users[d] = active;
    if (agg->usage > 0) {
      out.usage[d] = agg->usage;
      out.hours[d] = agg->hours;
    }
    all_users.push_back(&agg->users);
    for (size_t k = 0; k < dims.size(); ++k) {
      for (const auto& [value, users] : agg->dims[k]) dims[k][value].push_back(&users);
    }
  }
  out.users = all_users.empty() ? 0
                                : static_cast<int64_t>(Roaring::fastunion(all_users.size(),
                                                                          all_users.data())
                                                           .cardinality());
  std::vector<ValueCount>* targets[] = {&out.platforms, &out.languages, &out.versions,
                                        &out.countries, &out.ram};
  {
    std::lock_guard<std::mutex> dl(dict_mu_);
    for (size_t k = 0; k < dims.size(); ++k) {
      for (auto& [value, parts] : dims[k]) {
        const int64_t n = static_cast<int64_t>(
            Roaring::fastunion(parts.size(), parts.data()).cardinality());
        targets[k]->push_back({strings_.Text(value), n});
      }
      SortValueCounts(targets[k]);
    }
  }
  first_seen_.ForRange(r.from_ms, r.to_ms, [&](uint32_t user) {
    const int64_t first = users_.at(user).first_ms;
    if (first >= r.from_ms && first <= r.to_ms) ++out.new_users[local_day(first)];
  });
  install_starts_.ForRange(r.from_ms, r.to_ms, [&](uint32_t device) {
    const int64_t start = devices_.at(device).install_start;
    if (start >= r.from_ms && start <= r.to_ms) ++out.installs;
  });
  for (const auto& [d, agg] : days) {
    if (agg->sessions > 0) {
      out.avg_session_duration[d] =
          static_cast<double>(agg->session_seconds) / static_cast<double>(agg->sessions);
    }
  }
  return out;
}

Result<DailyCounts> AnalyticsIndex::EventCounts(const QueryRange& r, const RawSource& raw,
                                                bool errors) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::unordered_map<uint32_t, std::map<int64_t, int64_t>> by_id;
  Status st = ForEachBucket(r.from_ms, r.to_ms, r.utc_offset_min, raw, false,
                            [&](int64_t hour, const Bucket& b, bool) {
                              const int64_t day = FloorDiv(hour, 24);
                              for (const auto& [name, n] : errors ? b.errors : b.events) {
                                by_id[name][day] += n;
                              }
                            });
  if (!st.ok()) return st;
  DailyCounts out;
  std::lock_guard<std::mutex> dl(dict_mu_);
  for (auto& [id, days] : by_id) out[names_.Text(id)] = std::move(days);
  return out;
}

Result<std::vector<EventPropKeys>> AnalyticsIndex::EventProps(const QueryRange& r,
                                                              const RawSource& raw) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  // (event, key, kind) triples present in range, sorted; consecutive buckets
  // mostly hold the same triples, so a merge is rarely needed.
  std::vector<uint64_t> packed, merged;
  Status st = ForEachBucket(r.from_ms, r.to_ms, r.utc_offset_min, raw, true,
                            [&](int64_t, const Bucket& b, bool) {
                              if (std::includes(packed.begin(), packed.end(),
                                                b.prop_keys.begin(), b.prop_keys.end())) {
                                return;
                              }
                              merged.clear();
                              std::set_union(packed.begin(), packed.end(), b.prop_keys.begin(),
                                             b.prop_keys.end(), std::back_inserter(merged));
                              packed.swap(merged);
                            });
  if (!st.ok()) return st;
  std::map<std::pair<uint32_t, uint8_t>, std::set<uint32_t>> keys;  // (event, kind) -> keys
  for (uint64_t p : packed) {
    keys[{static_cast<uint32_t>(p >> 26), static_cast<uint8_t>(p & 3)}].insert(
        static_cast<uint32_t>((p >> 2) & 0xFFFFFF));
  }
  std::vector<EventPropKeys> out;
  std::lock_guard<std::mutex> dl(dict_mu_);
  for (const auto& [ek, key_ids] : keys) {
    EventPropKeys e;
    e.event = names_.Text(ek.first);
    e.type = std::string(PropKindName(static_cast<PropValue::Kind>(ek.second)));
    for (uint32_t k : key_ids) e.keys.push_back(keys_.Text(k));
    std::sort(e.keys.begin(), e.keys.end());
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const EventPropKeys& a, const EventPropKeys& b) {
    return a.event != b.event ? a.event < b.event : a.type < b.type;
  });
  return out;
}

Result<std::vector<ValueCount>> AnalyticsIndex::EventAttribute(const QueryRange& r,
                                                               std::string_view event,
                                                               std::string_view attr,
                                                               const RawSource& raw) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  uint32_t event_id, key_id;
  {
    std::lock_guard<std::mutex> dl(dict_mu_);
    event_id = names_.Find(event);
    key_id = keys_.Find(attr);
  }
  std::vector<ValueCount> out;
  if (event_id == Dictionary::kMissing || key_id == Dictionary::kMissing) return out;
  std::unordered_map<uint32_t, int64_t> counts;
  Status st = ForEachBucket(r.from_ms, r.to_ms, r.utc_offset_min, raw, true,
                            [&](int64_t, const Bucket& b, bool) {
                              auto it = b.props.find((static_cast<uint64_t>(event_id) << 32) | key_id);
                              if (it == b.props.end()) return;
                              for (const auto& [value, n] : it->second) counts[value] += n;
                            });
  if (!st.ok()) return st;
  // Values render as strings: "120" the number and "120" the string count together.
  std::map<std::string, int64_t> by_text;
  {
    std::lock_guard<std::mutex> dl(dict_mu_);
    for (const auto& [vid, n] : counts) by_text[values_.Text(vid).substr(1)] += n;
  }
  for (auto& [text, n] : by_text) out.push_back({text, n});
  SortValueCounts(&out);
  return out;
}

std::optional<std::string> AnalyticsIndex::Text(uint32_t id) const {
  if (id == Dictionary::kMissing) return std::nullopt;
  std::lock_guard<std::mutex> dl(dict_mu_);
  return strings_.Text(id);
}

UserSummary AnalyticsIndex::Summarize(uint32_t row) const {
  const UserInfo& u = users_.at(row);
  UserSummary s;
  s.id = UserDbId(app_id_, u.key);
  s.user_key = u.key;
  s.created_ms = u.first_ms;
  s.last_seen_ms = u.last_ms;
  // Per device: the latest session (by start) holding the user's events.
  std::map<uint32_t, const SessionInfo*> latest;
  std::map<uint32_t, int64_t> last_seen;
  const SessionInfo* newest = nullptr;
  for (uint32_t srow : u.sessions) {
    auto it = sessions_.find(srow);
    if (it == sessions_.end()) continue;
    const SessionInfo& si = it->second;
    auto& l = latest[si.device];
    if (!l || si.start_ms >= l->start_ms) l = &si;
    last_seen[si.device] = std::max(last_seen[si.device], si.end_ms);
    if (!newest || si.start_ms >= newest->start_ms) newest = &si;
  }
  for (const auto& [drow, si] : latest) {
    DeviceSummary d;
    auto dit = devices_.find(drow);
    d.device_id = dit == devices_.end() ? std::string() : dit->second.key;
    d.last_seen_ms = last_seen[drow];
    if (si->platform != Dictionary::kMissing) d.platform = NormalizePlatform(*Text(si->platform));
    d.os_version = Text(si->os_version);
    d.version = Text(si->version);
    s.devices.push_back(std::move(d));
  }
  std::sort(s.devices.begin(), s.devices.end(), [](const DeviceSummary& a, const DeviceSummary& b) {
    return a.last_seen_ms != b.last_seen_ms ? a.last_seen_ms < b.last_seen_ms
                                            : a.device_id < b.device_id;
  });
  std::map<std::string, std::string> props;
  if (newest) {
    if (auto c = Text(newest->country); c && !c->empty()) props["country"] = PropJson(PropValue{PropValue::Kind::kString, *c});
    if (auto l = Text(newest->locale)) {
      std::string lang = LanguageOf(*l);
      if (!lang.empty()) props["locale"] = PropJson(PropValue{PropValue::Kind::kString, lang});
    }
  }
  for (const auto& [key, tv] : u.props) props[key] = tv.second;
  // country and locale first, then the custom props in key order.
  for (const char* k : {"country", "locale"}) {
    auto it = props.find(k);
    if (it != props.end()) {
      s.props.emplace_back(it->first, it->second);
      props.erase(it);
    }
  }
  for (auto& [k, v] : props) s.props.emplace_back(k, v);
  return s;
}

UserList AnalyticsIndex::Users(int64_t page, int64_t limit) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  UserList out;
  out.total = static_cast<int64_t>(users_.size());
  const int64_t size = static_cast<int64_t>(by_last_seen_.size());
  const int64_t skip = (page - 1) * limit;
  if (skip >= size) return out;
  // Newest first: rank size-1-skip, then walk towards the oldest.
  auto it = by_last_seen_.find_by_order(static_cast<size_t>(size - 1 - skip));
  for (int64_t n = 0; n < limit; ++n) {
    out.users.push_back(Summarize(it->second));
    if (it == by_last_seen_.begin()) break;
    --it;
  }
  return out;
}

uint32_t AnalyticsIndex::SessionRow(std::string_view device_key,
                                    std::string_view session_key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto d = device_rows_.find(std::string(device_key));
  if (d == device_rows_.end()) return 0;
  for (uint32_t row : devices_.at(d->second).sessions) {
    auto s = sessions_.find(row);
    if (s != sessions_.end() && s->second.key == session_key) return row;
  }
  return 0;
}

uint32_t AnalyticsIndex::UserRow(std::string_view user_key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = user_rows_.find(std::string(user_key));
  return it == user_rows_.end() ? 0 : it->second;
}

std::optional<UserDetails> AnalyticsIndex::User(std::string_view user_key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = user_rows_.find(std::string(user_key));
  if (it == user_rows_.end()) return std::nullopt;
  UserDetails out;
  out.user = Summarize(it->second);
  const UserInfo& u = users_.at(it->second);
  std::vector<const SessionInfo*> sessions;
  for (uint32_t srow : u.sessions) {
    auto s = sessions_.find(srow);
    if (s != sessions_.end()) sessions.push_back(&s->second);
  }
  std::sort(sessions.begin(), sessions.end(), [](const SessionInfo* a, const SessionInfo* b) {
    return a->start_ms != b->start_ms ? a->start_ms > b->start_ms : a->key > b->key;
  });
  for (const SessionInfo* s : sessions) {
    auto d = devices_.find(s->device);
    out.sessions.push_back({s->key, d == devices_.end() ? std::string() : d->second.key, s->start_ms,
                            s->end_ms, s->actions, s->errors});
  }
  return out;
}

std::vector<uint32_t> AnalyticsIndex::UserSessions(std::string_view user_key,
                                                   std::string_view session_key,
                                                   std::string_view device_key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<uint32_t> out;
  auto it = user_rows_.find(std::string(user_key));
  if (it == user_rows_.end()) return out;
  for (uint32_t srow : users_.at(it->second).sessions) {
    auto s = sessions_.find(srow);
    if (s == sessions_.end() || s->second.key != session_key) continue;
    if (!device_key.empty()) {
      auto d = devices_.find(s->second.device);
      if (d == devices_.end() || d->second.key != device_key) continue;
    }
    out.push_back(srow);
  }
  return out;
}

std::vector<uint32_t> AnalyticsIndex::AllUserSessions(std::string_view user_key) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = user_rows_.find(std::string(user_key));
  if (it == user_rows_.end()) return {};
  return users_.at(it->second).sessions;
}

bool AnalyticsIndex::SessionContext(uint32_t session, Event* c, bool* install) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = sessions_.find(session);
  if (it == sessions_.end()) return false;
  const SessionInfo& s = it->second;
  auto text = [this](uint32_t id) { return id == Dictionary::kMissing ? std::string() : strings_.Text(id); };
  // An event's context falls back to its session's init only: a later event
  // that happened to carry context (an error) says nothing about earlier ones.
  if (s.context_from_init) {
    std::lock_guard<std::mutex> dl(dict_mu_);
    c->platform = text(s.platform);
    c->os_version = text(s.os_version);
    c->locale = text(s.locale);
    c->version = text(s.version);
    c->module_version = text(s.module_version);
    c->arch = text(s.arch);
    c->country = text(s.country);
  }
  if (s.context_from_init) c->total_ram = s.total_ram;
  auto d = devices_.find(s.device);
  *install = d != devices_.end() && d->second.install_session == session;
  return true;
}

}  // namespace nucleon
