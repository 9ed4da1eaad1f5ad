#include "store/sqlite/analytics_reader.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "core/time_util.h"
#include "store/payload_props.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/rollup_events.h"

namespace nucleon {

namespace {

constexpr int64_t kDayMs = 86400000;
constexpr int64_t kHourMs = 3600000;

void SortValueCounts(std::vector<ValueCount>* v) {
  std::sort(v->begin(), v->end(), [](const ValueCount& a, const ValueCount& b) {
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
}

int64_t CeilDiv(int64_t a, int64_t b) { return -FloorDiv(-a, b); }

// The per-bucket counts (installs, new users, sessions and their seconds) of a
// range: whole buckets that lie in one local day come from bucket_counts, the
// rest (the range's cut edges, and buckets that straddle local midnight in an
// unusual time zone) from the entity tables.
struct CountsWindows {
  struct Row {
    int64_t bucket, installs, new_users, sessions, seconds;
  };
  std::vector<Row> rows;
  std::vector<std::pair<int64_t, int64_t>> parts;  // [lo, hi] windows
};

Status SplitCounts(int64_t app, int64_t from, int64_t to, int offset_min, SqliteDb& db,
                   CountsWindows* out) {
  if (from > to) return Status::Ok();
  const int64_t offset_ms = static_cast<int64_t>(offset_min) * 60000;
  const int64_t first_full = CeilDiv(from, kBucketMs);
  const int64_t last_full = FloorDiv(to + 1, kBucketMs) - 1;
  if (first_full > last_full) {
    out->parts.emplace_back(from, to);
    return Status::Ok();
  }
  if (from < first_full * kBucketMs) out->parts.emplace_back(from, first_full * kBucketMs - 1);
  if ((last_full + 1) * kBucketMs <= to) out->parts.emplace_back((last_full + 1) * kBucketMs, to);
  auto q = db.Cached(
      "SELECT bucket, installs, new_users, sessions, session_seconds FROM bucket_counts"
      " WHERE app = ? AND bucket BETWEEN ? AND ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, first_full);
  (*q)->Bind(3, last_full);
  Status st;
  while ((*q)->Step(&st)) {
    const int64_t b = (*q)->Int(0);
    const int64_t lo = b * kBucketMs, hi = (b + 1) * kBucketMs - 1;
    if (FloorDiv(lo + offset_ms, kDayMs) != FloorDiv(hi + offset_ms, kDayMs)) {
      out->parts.emplace_back(lo, hi);
      continue;
    }
    out->rows.push_back({b, (*q)->Int(1), (*q)->Int(2), (*q)->Int(3), (*q)->Int(4)});
  }
  return st;
}

Result<int64_t> InstallsIn(int64_t app, int64_t lo, int64_t hi, SqliteDb& db) {
  auto q = db.Cached("SELECT count(*) FROM devices WHERE app = ? AND install_ms BETWEEN ? AND ?");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, lo);
  (*q)->Bind(3, hi);
  Status st;
  int64_t n = 0;
  if ((*q)->Step(&st)) n = (*q)->Int(0);
  NUCLEON_RETURN_IF_ERROR(st);
  return n;
}

// The sessions of a range split by SplitCounts, by the local day of their
// start: the buckets' counted sessions, and the cut windows' sessions read one
// by one.
Status AddSessionDays(int64_t app, const CountsWindows& w, int offset_min, SqliteDb& db,
                      SessionDays* out) {
  const int64_t offset_ms = static_cast<int64_t>(offset_min) * 60000;
  auto local_day = [offset_ms](int64_t t) { return FloorDiv(t + offset_ms, kDayMs); };
  for (const auto& row : w.rows) {
    if (row.sessions == 0) continue;
    SessionDay& d = (*out)[local_day(row.bucket * kBucketMs)];
    d.sessions += row.sessions;
    d.seconds += row.seconds;
  }
  for (const auto& [lo, hi] : w.parts) {
    auto q = db.Cached(
        "SELECT start_ms, end_ms FROM sessions WHERE app = ? AND start_ms BETWEEN ? AND ?");
    if (!q.ok()) return q.status();
    (*q)->Bind(1, app);
    (*q)->Bind(2, lo);
    (*q)->Bind(3, hi);
    Status st;
    while ((*q)->Step(&st)) {
      SessionDay& d = (*out)[local_day((*q)->Int(0))];
      ++d.sessions;
      d.seconds += ((*q)->Int(1) - (*q)->Int(0)) / 1000;
    }
    NUCLEON_RETURN_IF_ERROR(st);
  }
  for (auto it = out->begin(); it != out->end();) {
    it = it->second.sessions == 0 ? out->erase(it) : std::next(it);
  }
  return Status::Ok();
}

}  // namespace

Status AnalyticsReader::CollectPieces(int64_t app, int64_t from_ms, int64_t to_ms, int offset_min,
                                      bool with_props, const ReadTx& tx, Pieces* out, bool keep) {
  SqliteDb& db = tx.db;
  int64_t first_b = 0, last_b = 0;
  if (from_ms > to_ms || !rollups_->Span(app, &first_b, &last_b)) return Status::Ok();
  // Nothing exists outside the buckets' span: clamp pathological ranges.
  from_ms = std::max(from_ms, first_b * kBucketMs);
  to_ms = std::min(to_ms, (last_b + 1) * kBucketMs - 1);
  if (from_ms > to_ms) return Status::Ok();
  const std::vector<int64_t> present =
      rollups_->Present(app, FloorDiv(from_ms, kBucketMs), FloorDiv(to_ms, kBucketMs));
  if (present.empty()) return Status::Ok();
  const int64_t offset_ms = static_cast<int64_t>(offset_min) * 60000;

  struct Cut {
    int64_t hour, bucket, lo, hi;
  };
  struct Whole {
    int64_t hour, bucket;
  };
  std::vector<Whole> wholes;
  std::vector<Cut> cuts;
  size_t p = 0;  // into present: the first bucket the current hour may touch
  // Walk local hours: every piece of a local hour lies in one local day and hour.
  for (int64_t hour = FloorDiv(from_ms + offset_ms, kHourMs);; ++hour) {
    const int64_t lo = std::max(from_ms, hour * kHourMs - offset_ms);
    const int64_t hi = std::min(to_ms, (hour + 1) * kHourMs - offset_ms - 1);
    if (lo > to_ms) break;
    if (lo > hi) continue;
    // The present buckets this hour touches: whole ones, or the part in the hour.
    const int64_t b_first = FloorDiv(lo, kBucketMs), b_last = FloorDiv(hi, kBucketMs);
    while (p < present.size() && present[p] < b_first) ++p;
    for (size_t k = p; k < present.size() && present[k] <= b_last; ++k) {
      const int64_t b = present[k];
      const int64_t plo = std::max(lo, b * kBucketMs), phi = std::min(hi, (b + 1) * kBucketMs - 1);
      if (plo == b * kBucketMs && phi == (b + 1) * kBucketMs - 1) {
        wholes.push_back({hour, b});
      } else {
        cuts.push_back({hour, b, plo, phi});
      }
    }
  }

  std::vector<int64_t> needed;
  needed.reserve(wholes.size() + cuts.size());
  for (const Whole& w : wholes) needed.push_back(w.bucket);
  for (const Cut& c : cuts) needed.push_back(c.bucket);
  std::sort(needed.begin(), needed.end());
  needed.erase(std::unique(needed.begin(), needed.end()), needed.end());
  std::vector<CoreRef> refs;
  NUCLEON_RETURN_IF_ERROR(rollups_->Cores(app, needed, tx, &refs, keep));
  auto core_of = [&](int64_t b) -> const CoreRef& {
    return *std::lower_bound(refs.begin(), refs.end(), b,
                             [](const CoreRef& r, int64_t v) { return r.bucket < v; });
  };

  // Cut windows whose bucket has no event outside them are the whole bucket
  // (a range ending now); the others are read from the events table, one read
  // per bucket for all of its windows.
  std::vector<Cut> raw_cuts;
  std::vector<std::pair<int64_t, int64_t>> whole_cuts;  // (hour, bucket)
  for (const Cut& c : cuts) {
    const BucketCore& core = *core_of(c.bucket).core;
    if (c.lo <= core.min_ms && c.hi >= core.max_ms) {
      whole_cuts.emplace_back(c.hour, c.bucket);
    } else {
      raw_cuts.push_back(c);
    }
  }
  std::vector<std::pair<size_t, size_t>> cut_ranges(raw_cuts.size());  // events per raw cut
  {
    RollupEventBuilder builder(dict_);
    std::vector<std::pair<int64_t, size_t>> event_cut;  // (time, cut index) per built event
    size_t i = 0;
    while (i < raw_cuts.size()) {
      size_t j = i;
      int64_t lo = raw_cuts[i].lo, hi = raw_cuts[i].hi;
      while (j + 1 < raw_cuts.size() && raw_cuts[j + 1].bucket == raw_cuts[i].bucket) {
        ++j;
        lo = std::min(lo, raw_cuts[j].lo);
        hi = std::max(hi, raw_cuts[j].hi);
      }
      // The bucket's rows are in its runs (with maybe others, filtered out here).
      auto q = db.Cached(
          "SELECT time_ms, type, user, name, body FROM events WHERE id BETWEEN ? AND ?"
          " AND app = ? AND time_ms BETWEEN ? AND ?");
      if (!q.ok()) return q.status();
      Status st;
      for (const auto& [first_id, last_id] : core_of(raw_cuts[i].bucket).core->runs) {
        (*q)->Bind(1, first_id);
        (*q)->Bind(2, last_id);
        (*q)->Bind(3, app);
        (*q)->Bind(4, lo);
        (*q)->Bind(5, hi);
        while ((*q)->Step(&st)) {
          const int64_t t = (*q)->Int(0);
          size_t k = i;
          while (k <= j && !(t >= raw_cuts[k].lo && t <= raw_cuts[k].hi)) ++k;
          if (k > j) continue;
          const auto type = static_cast<EventType>((*q)->Int(1));
          const bool props = with_props && (type == EventType::kInit || type == EventType::kEvent);
          const bool needs_body = type == EventType::kInit || props;
          const BodyParts body = needs_body ? ParseBody((*q)->Blob(4)) : BodyParts();
          builder.AddStored(0, t, type, static_cast<uint32_t>((*q)->Int(2)),
                            static_cast<uint32_t>((*q)->Int(3)), body, props);
          event_cut.emplace_back(t, k);
        }
        NUCLEON_RETURN_IF_ERROR(st);
        (*q)->Reset();
      }
      i = j + 1;
    }
    // Group the built events by cut window.
    std::span<const RollupEvent> built = builder.events();
    std::vector<size_t> order(built.size());
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return event_cut[a].second < event_cut[b].second; });
    out->raw.reserve(built.size());
    size_t props_total = 0;
    for (const RollupEvent& e : built) props_total += e.props.size();
    out->raw_props.reserve(props_total);
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t cut = event_cut[order[k]].second;
      if (k == 0 || event_cut[order[k - 1]].second != cut) cut_ranges[cut].first = out->raw.size();
      RollupEvent e = built[order[k]];
      const size_t begin = out->raw_props.size();
      out->raw_props.insert(out->raw_props.end(), e.props.begin(), e.props.end());
      e.props = std::span<const BodyProp>(out->raw_props.data() + begin, e.props.size());
      out->raw.push_back(e);
      cut_ranges[cut].second = out->raw.size();
    }
  }

  for (const Whole& w : wholes) {
    out->items.push_back({w.hour, w.bucket, core_of(w.bucket).core.get(), true, 0, 0});
  }
  for (const auto& [hour, b] : whole_cuts) {
    out->items.push_back({hour, b, core_of(b).core.get(), true, 0, 0});
  }
  for (size_t k = 0; k < raw_cuts.size(); ++k) {
    auto piece = std::make_unique<BucketCore>();
    for (size_t e = cut_ranges[k].first; e < cut_ranges[k].second; ++e) piece->Add(out->raw[e]);
    out->items.push_back({raw_cuts[k].hour, raw_cuts[k].bucket, piece.get(), false,
                          cut_ranges[k].first, cut_ranges[k].second});
    out->built.push_back(std::move(piece));
  }
  out->refs = std::move(refs);
  return Status::Ok();
}

Result<QuickGlanceCounts> AnalyticsReader::QuickGlance(int64_t app, int64_t from_ms, int64_t to_ms,
                                                       const ReadTx& tx) {
  SqliteDb& db = tx.db;
  QuickGlanceCounts c;
  Pieces pieces;
  NUCLEON_RETURN_IF_ERROR(CollectPieces(app, from_ms, to_ms, 0, false, tx, &pieces));
  std::vector<const Roaring*> parts;
  for (const Pieces::Item& it : pieces.items) {
    parts.push_back(&it.core->users);
    c.app_starts += it.core->inits;
    for (const auto& [name, n] : it.core->errors) c.errors += n;
  }
  if (!parts.empty()) {
    c.users = static_cast<int64_t>(Roaring::fastunion(parts.size(), parts.data()).cardinality());
  }
  CountsWindows w;
  NUCLEON_RETURN_IF_ERROR(SplitCounts(app, from_ms, to_ms, 0, db, &w));
  for (const auto& row : w.rows) c.installs += row.installs;
  for (const auto& [lo, hi] : w.parts) {
    auto n = InstallsIn(app, lo, hi, db);
    if (!n.ok()) return n.status();
    c.installs += *n;
  }
  return c;
}

Result<std::shared_ptr<const DayAgg>> AnalyticsReader::BuildDay(int64_t app, int64_t from_ms,
                                                                int64_t to_ms, int offset_min,
                                                                const ReadTx& tx,
                                                                std::vector<CoreRef>* refs,
                                                                bool keep) {
  Pieces pieces;
  NUCLEON_RETURN_IF_ERROR(CollectPieces(app, from_ms, to_ms, offset_min, false, tx, &pieces, keep));
  auto day = std::make_shared<DayAgg>();
  std::vector<const Roaring*> parts;
  std::array<std::map<uint32_t, std::vector<const Roaring*>>, kDims> dims;
  for (const Pieces::Item& it : pieces.items) {
    parts.push_back(&it.core->users);
    day->usage += it.core->inits;
    day->hours[static_cast<size_t>(it.hour - FloorDiv(it.hour, 24) * 24)] += it.core->inits;
    for (const BucketCore::DimUsers& d : it.core->dims) dims[d.dim][d.value].push_back(&d.users);
  }
  if (!parts.empty()) day->users = Roaring::fastunion(parts.size(), parts.data());
  for (size_t k = 0; k < kDims; ++k) {
    for (auto& [value, users] : dims[k]) {
      day->dims[k].emplace_back(value, Roaring::fastunion(users.size(), users.data()));
    }
  }
  if (refs) *refs = std::move(pieces.refs);
  return std::shared_ptr<const DayAgg>(std::move(day));
}

Result<DailyAnalytics> AnalyticsReader::Daily(int64_t app, const QueryRange& r, const ReadTx& tx) {
  SqliteDb& db = tx.db;
  DailyAnalytics out;
  const int64_t offset_ms = static_cast<int64_t>(r.utc_offset_min) * 60000;
  auto local_day = [offset_ms](int64_t t) { return FloorDiv(t + offset_ms, kDayMs); };
  int64_t first_b = 0, last_b = 0;
  if (r.from_ms > r.to_ms || !rollups_->Span(app, &first_b, &last_b)) return out;
  // Nothing exists outside the buckets' span.
  const int64_t from = std::max(r.from_ms, first_b * kBucketMs);
  const int64_t to = std::min(r.to_ms, (last_b + 1) * kBucketMs - 1);

  // One aggregate per local day. A whole day made of whole buckets (every
  // real time zone) before the newest bucket is cached until a bucket of it
  // changes; the range's partial first and last days are computed each time.
  const bool aligned = (offset_ms % kBucketMs) == 0;
  const int64_t newest = last_b * kBucketMs;
  std::vector<std::pair<int64_t, std::shared_ptr<const DayAgg>>> days;
  for (int64_t d = local_day(from); from <= to && d <= local_day(to); ++d) {
    const int64_t day_from = d * kDayMs - offset_ms, day_to = (d + 1) * kDayMs - offset_ms - 1;
    const int64_t lo = std::max(from, day_from), hi = std::min(to, day_to);
    const bool whole = aligned && lo == day_from && hi == day_to && day_to < newest;
    std::shared_ptr<const DayAgg> agg =
        whole ? rollups_->CachedDay(app, r.utc_offset_min, d) : nullptr;
    if (!agg) {
      std::vector<CoreRef> refs;
      // A whole day is cached as one aggregate: its buckets need not be.
      auto built = BuildDay(app, lo, hi, r.utc_offset_min, tx, &refs, /*keep=*/!whole);
      if (!built.ok()) return built.status();
      agg = *built;
      if (whole) rollups_->CacheDay(app, r.utc_offset_min, d, agg, refs, tx);
    }
    days.emplace_back(d, std::move(agg));
  }

  std::vector<const Roaring*> all_users;
  std::array<std::map<uint32_t, std::vector<const Roaring*>>, kDims> dims;
  for (const auto& [d, agg] : days) {
    const auto active = static_cast<int64_t>(agg->users.cardinality());
    if (active > 0) out.active_users[d] = active;
    if (agg->usage > 0) {
      out.usage[d] = agg->usage;
      out.hours[d] = agg->hours;
    }
    all_users.push_back(&agg->users);
    for (size_t k = 0; k < kDims; ++k) {
      for (const auto& [value, users] : agg->dims[k]) dims[k][value].push_back(&users);
    }
  }
  if (!all_users.empty()) {
    out.users =
        static_cast<int64_t>(Roaring::fastunion(all_users.size(), all_users.data()).cardinality());
  }
  std::vector<ValueCount>* targets[] = {&out.platforms, &out.languages, &out.versions,
                                        &out.countries, &out.ram};
  for (size_t k = 0; k < kDims; ++k) {
    for (auto& [value, parts] : dims[k]) {
      const auto n =
          static_cast<int64_t>(Roaring::fastunion(parts.size(), parts.data()).cardinality());
      targets[k]->push_back({std::string(dict_->Text(value)), n});
    }
    SortValueCounts(targets[k]);
  }

  // Installs, new users and session durations, by the bucket of their start.
  CountsWindows w;
  NUCLEON_RETURN_IF_ERROR(SplitCounts(app, from, to, r.utc_offset_min, db, &w));
  for (const auto& row : w.rows) {
    out.installs += row.installs;
    if (row.new_users) out.new_users[local_day(row.bucket * kBucketMs)] += row.new_users;
  }
  for (const auto& [lo, hi] : w.parts) {
    auto n = InstallsIn(app, lo, hi, db);
    if (!n.ok()) return n.status();
    out.installs += *n;
    {
      auto q = db.Cached("SELECT first_ms FROM users WHERE app = ? AND first_ms BETWEEN ? AND ?");
      if (!q.ok()) return q.status();
      (*q)->Bind(1, app);
      (*q)->Bind(2, lo);
      (*q)->Bind(3, hi);
      Status st;
      while ((*q)->Step(&st)) ++out.new_users[local_day((*q)->Int(0))];
      NUCLEON_RETURN_IF_ERROR(st);
    }
  }
  for (auto it = out.new_users.begin(); it != out.new_users.end();) {
    it = it->second == 0 ? out.new_users.erase(it) : std::next(it);
  }
  SessionDays sessions;
  NUCLEON_RETURN_IF_ERROR(AddSessionDays(app, w, r.utc_offset_min, db, &sessions));
  for (const auto& [d, s] : sessions) out.avg_session_duration[d] = MeanSessionSeconds(s);
  return out;
}

Result<SessionDays> AnalyticsReader::Sessions(int64_t app, const QueryRange& r, const ReadTx& tx) {
  SessionDays out;
  int64_t first_b = 0, last_b = 0;
  if (r.from_ms > r.to_ms || !rollups_->Span(app, &first_b, &last_b)) return out;
  // Nothing exists outside the buckets' span (as Daily clamps).
  const int64_t from = std::max(r.from_ms, first_b * kBucketMs);
  const int64_t to = std::min(r.to_ms, (last_b + 1) * kBucketMs - 1);
  CountsWindows w;
  NUCLEON_RETURN_IF_ERROR(SplitCounts(app, from, to, r.utc_offset_min, tx.db, &w));
  NUCLEON_RETURN_IF_ERROR(AddSessionDays(app, w, r.utc_offset_min, tx.db, &out));
  return out;
}

Result<DailyCounts> AnalyticsReader::EventCounts(int64_t app, const QueryRange& r, bool errors,
                                                 const ReadTx& tx) {
  Pieces pieces;
  NUCLEON_RETURN_IF_ERROR(
      CollectPieces(app, r.from_ms, r.to_ms, r.utc_offset_min, false, tx, &pieces));
  std::unordered_map<uint32_t, std::map<int64_t, int64_t>> by_id;
  for (const Pieces::Item& it : pieces.items) {
    const int64_t day = FloorDiv(it.hour, 24);
    for (const auto& [name, n] : errors ? it.core->errors : it.core->events) by_id[name][day] += n;
  }
  DailyCounts out;
  for (auto& [id, days] : by_id) out[std::string(dict_->Text(id))] = std::move(days);
  return out;
}

Result<std::vector<ErrorGroup>> AnalyticsReader::ErrorGroups(int64_t app, std::string_view app_id,
                                                             const QueryRange& r,
                                                             const ReadTx& tx) {
  (void)app_id;
  std::vector<ErrorGroup> out;
  if (r.from_ms > r.to_ms) return out;
  struct Group {
    int64_t count = 0, first = INT64_MAX, last = INT64_MIN, sample_row = 0;
    std::set<int64_t> users;
  };
  std::map<uint32_t, Group> groups;  // by name id
  // The range's errors through their own index (events_errors), in time
  // order, equal times in storage order. `type = 3` is written out: SQLite
  // uses a partial index only when the statement's condition implies its own.
  static_assert(static_cast<int>(EventType::kError) == 3);
  auto q = tx.db.Cached(
      "SELECT id, name, user, time_ms FROM events WHERE app = ? AND type = 3"
      " AND time_ms BETWEEN ? AND ? ORDER BY time_ms, id");
  if (!q.ok()) return q.status();
  (*q)->Bind(1, app);
  (*q)->Bind(2, r.from_ms);
  (*q)->Bind(3, r.to_ms);
  Status st;
  while ((*q)->Step(&st)) {
    Group& g = groups[static_cast<uint32_t>((*q)->Int(1))];
    const int64_t row = (*q)->Int(0), t = (*q)->Int(3);
    ++g.count;
    g.users.insert((*q)->Int(2));
    g.first = std::min(g.first, t);
    g.last = t;  // the latest so far: rows come in time order
    g.sample_row = row;
  }
  NUCLEON_RETURN_IF_ERROR(st);
  (*q)->Reset();
  auto sample = tx.db.Cached(
      "SELECT e.body, s.session_key, d.device_key, u.user_key, u.anon_id FROM events e"
      " JOIN sessions s ON s.id = e.session JOIN devices d ON d.id = s.device"
      " JOIN users u ON u.id = e.user WHERE e.id = ?");
  if (!sample.ok()) return sample.status();
  for (const auto& [name, g] : groups) {
    ErrorGroup e;
    e.name = std::string(dict_->Text(name));
    e.count = g.count;
    e.users = static_cast<int64_t>(g.users.size());
    e.first_ms = g.first;
    e.last_ms = e.sample_ms = g.last;
    (*sample)->Bind(1, g.sample_row);
    Status st;
    if ((*sample)->Step(&st)) {
      Event ev;
      DecodeBodyInto(ParseBody((*sample)->Blob(0)), *dict_, (*sample)->Text(3), (*sample)->Text(4),
                     &ev);
      std::tie(e.message, e.stack) = ErrorTexts(ev.payload_json);
      e.sample_session = std::string((*sample)->Text(1));
      e.sample_device = std::string((*sample)->Text(2));
      e.sample_user = std::string((*sample)->Text(3));
    }
    NUCLEON_RETURN_IF_ERROR(st);
    (*sample)->Reset();
    out.push_back(std::move(e));
  }
  SortErrorGroups(&out);
  return out;
}

Result<std::vector<EventPropKeys>> AnalyticsReader::EventProps(int64_t app, const QueryRange& r,
                                                               const ReadTx& tx) {
  Pieces pieces;
  NUCLEON_RETURN_IF_ERROR(
      CollectPieces(app, r.from_ms, r.to_ms, r.utc_offset_min, true, tx, &pieces));
  // (event, key, kind) triples present in range; consecutive buckets mostly
  // hold the same triples, so a merge is rarely needed.
  using Triple = std::tuple<uint32_t, uint32_t, uint8_t>;
  std::vector<Triple> packed, merged, bucket;
  for (const Pieces::Item& it : pieces.items) {
    bucket.clear();
    for (const BucketCore::PropKey& k : it.core->prop_keys)
      bucket.emplace_back(k.event, k.key, k.kind);
    if (std::includes(packed.begin(), packed.end(), bucket.begin(), bucket.end())) continue;
    merged.clear();
    std::set_union(packed.begin(), packed.end(), bucket.begin(), bucket.end(),
                   std::back_inserter(merged));
    packed.swap(merged);
  }
  std::map<std::pair<std::string, uint8_t>, std::set<std::string>> keys;  // (event, kind) -> keys
  for (const auto& [event, key, kind] : packed) {
    keys[{std::string(dict_->Text(event)), kind}].insert(std::string(dict_->Text(key)));
  }
  std::vector<EventPropKeys> out;
  for (auto& [ek, key_set] : keys) {
    EventPropKeys e;
    e.event = ek.first;
    e.type = std::string(PropKindName(static_cast<PropValue::Kind>(ek.second)));
    e.keys.assign(key_set.begin(), key_set.end());
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const EventPropKeys& a, const EventPropKeys& b) {
    return a.event != b.event ? a.event < b.event : a.type < b.type;
  });
  return out;
}

Result<std::vector<ValueCount>> AnalyticsReader::EventAttribute(int64_t app, const QueryRange& r,
                                                                std::string_view event,
                                                                std::string_view attr,
                                                                const ReadTx& tx) {
  std::vector<ValueCount> out;
  const uint32_t event_id = dict_->Find(event);
  const uint32_t key_id = dict_->Find(attr);
  if (event_id == StringDictionary::kMissing || key_id == StringDictionary::kMissing ||
      event_id == StringDictionary::kEmpty) {
    return out;
  }
  Pieces pieces;
  NUCLEON_RETURN_IF_ERROR(
      CollectPieces(app, r.from_ms, r.to_ms, r.utc_offset_min, true, tx, &pieces));
  // Values render as strings: "120" the number and "120" the string count together.
  std::unordered_map<std::string, int64_t> by_text;
  std::vector<int64_t> stored;
  for (const Pieces::Item& it : pieces.items) {
    if (it.stored) {
      stored.push_back(it.bucket);
      continue;
    }
    for (size_t k = it.raw_begin; k < it.raw_end; ++k) {
      const RollupEvent& e = pieces.raw[k];
      if (e.name != event_id || (e.type != EventType::kInit && e.type != EventType::kEvent))
        continue;
      for (const BodyProp& p : e.props) {
        if (p.key == key_id) ++by_text[p.value.text];
      }
    }
  }
  std::sort(stored.begin(), stored.end());
  std::vector<std::shared_ptr<const PropValues>> slots;
  NUCLEON_RETURN_IF_ERROR(rollups_->PropSlots(app, event_id, key_id, stored, tx, &slots));
  for (const auto& values : slots) {
    if (!values) continue;
    for (const auto& [value_key, n] : values->counts) by_text[value_key.substr(1)] += n;
  }
  for (auto& [text, n] : by_text) out.push_back({text, n});
  SortValueCounts(&out);
  return out;
}

}  // namespace nucleon
