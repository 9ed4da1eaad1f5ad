#include "store/clickhouse/clickhouse_reader.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <future>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>

#include "core/normalize.h"
#include "core/time_util.h"
#include "store/clickhouse/event_rows.h"
#include "store/payload_props.h"

namespace nucleon {

namespace {

constexpr int64_t kDayMs = 86400000;
// Events read per statement when streaming them (export, session events).
constexpr int kPageRows = 50000;

int64_t Int(const std::string& s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

uint64_t UInt(const std::string& s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::string Range(int64_t from_ms, int64_t to_ms) {
  return "time >= " + std::to_string(from_ms) + " AND time <= " + std::to_string(to_ms);
}

// The local day (floor division) and hour of the ms column `col`.
std::string Day(const std::string& col, int offset_min) {
  const std::string x = "(" + col + " + " + std::to_string(int64_t{offset_min} * 60000) + ")";
  return "(intDiv(" + x + ", 86400000) - (" + x + " % 86400000 < 0))";
}

// The local hour, counted from the epoch.
std::string HourIndex(const std::string& col, int offset_min) {
  const std::string x = "(" + col + " + " + std::to_string(int64_t{offset_min} * 60000) + ")";
  return "(intDiv(" + x + ", 3600000) - (" + x + " % 3600000 < 0))";
}

std::string QuoteList(const std::vector<std::string>& values) {
  std::string out = "(";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += SqlQuote(values[i]);
  }
  return out + ")";
}

std::string NumberList(const std::vector<uint64_t>& values) {
  std::string out = "(";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(values[i]);
  }
  return out + ")";
}

void SortCounts(std::vector<ValueCount>* v) {
  std::sort(v->begin(), v->end(), [](const ValueCount& a, const ValueCount& b) {
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
}

// The rows (dimension, value, distinct users) of the breakdowns, sorted.
void AddBreakdowns(const std::vector<std::vector<std::string>>& rows, DailyAnalytics* out) {
  for (const auto& r : rows) {
    if (r.size() < 3) continue;
    std::vector<ValueCount>* to = r[0] == "p"   ? &out->platforms
                                  : r[0] == "l" ? &out->languages
                                  : r[0] == "v" ? &out->versions
                                  : r[0] == "c" ? &out->countries
                                                : &out->ram;
    to->push_back({r[1], Int(r[2])});
  }
  for (auto* v : {&out->platforms, &out->languages, &out->versions, &out->countries, &out->ram}) {
    SortCounts(v);
  }
}

// The context columns a session row carries, in this order, for the init
// context (i_) and the latest carrying event (c_).
constexpr const char* kContextColumns[] = {"platform",       "os_version", "locale", "version",
                                           "module_version", "arch",       "client", "country",
                                           "has_ram",        "total_ram"};
constexpr size_t kContextCount = std::size(kContextColumns);
constexpr const char* kCarries = "(platform != '' OR locale != '' OR version != '')";

// Calls `f(kind, key)` for each entry of an event_times `prop_list`
// (`<kind>,<length of key>:<key>` one after the other); stops at anything
// malformed.
template <typename F>
void ForEachListedProp(std::string_view list, F&& f) {
  while (!list.empty()) {
    int kind = 0;
    size_t length = 0;
    const char* end = list.data() + list.size();
    auto k = std::from_chars(list.data(), end, kind);
    if (k.ec != std::errc() || k.ptr == end || *k.ptr != ',') return;
    auto n = std::from_chars(k.ptr + 1, end, length);
    if (n.ec != std::errc() || n.ptr == end || *n.ptr != ':') return;
    const size_t key_at = static_cast<size_t>(n.ptr + 1 - list.data());
    if (length > list.size() - key_at) return;
    f(kind, list.substr(key_at, length));
    list.remove_prefix(key_at + length);
  }
}

void ReadContext(const std::vector<std::string>& row, size_t at, Event* out) {
  std::string* fields[] = {&out->platform,       &out->os_version, &out->locale, &out->version,
                           &out->module_version, &out->arch,       &out->client, &out->country};
  for (size_t i = 0; i < std::size(fields); ++i) *fields[i] = row[at + i];
  if (row[at + 8] == "1") out->total_ram = std::strtod(row[at + 9].c_str(), nullptr);
}

}  // namespace

struct ClickHouseReader::SessionRow {
  uint64_t hash = 0;
  std::string device, session;
  uint64_t created = 0;
  int64_t inits = 0, start = 0, end = 0, actions = 0, errors = 0, carriers = 0;
  Event init_context, carry_context;
  // §3.5: the init's context, else the latest carrying event's, else none.
  const Event* Context() const {
    if (inits > 0) return &init_context;
    return carriers > 0 ? &carry_context : nullptr;
  }
  // Latest start, then created later (§10).
  bool LaterThan(const SessionRow& o) const {
    return start != o.start ? start > o.start : created > o.created;
  }
};

// The sessions of some devices, to complete their events: by session, and
// each device's install (its first session: earliest start, then created
// first, §3.4).
class ClickHouseReader::SessionIndex {
 public:
  explicit SessionIndex(const std::vector<SessionRow>& sessions) {
    for (const SessionRow& s : sessions) {
      by_hash_[s.hash] = &s;
      auto& first = install_[s.device];
      if (!first || s.start < first->start ||
          (s.start == first->start && s.created < first->created)) {
        first = &s;
      }
    }
  }

  // Fills the event's missing context from its session's init (§6.3) and
  // sets first_time; an event of an unknown session stays as it is.
  void Complete(EventView* v) const {
    Event& e = v->event;
    auto it = by_hash_.find(SessionHash(e.app_id, e.device_id, e.session_id));
    if (it == by_hash_.end()) return;
    const SessionRow& s = *it->second;
    if (s.inits > 0) CompleteFromInitContext(s.init_context, &e);
    auto first = install_.find(s.device);
    v->first_time = e.type == EventType::kInit && first != install_.end() && first->second == &s;
  }

 private:
  std::unordered_map<uint64_t, const SessionRow*> by_hash_;
  std::map<std::string, const SessionRow*> install_;  // per device
};

Result<ClickHouseReader::Rows> ClickHouseReader::Query(const std::string& sql) {
  auto body = client_->Execute(sql + " FORMAT TabSeparated");
  if (!body.ok()) return body.status();
  return ParseTsv(*body);
}

void ClickHouseReader::ForgetDuplicates() {
  std::lock_guard lock(duplicates_mu_);
  duplicates_loaded_ms_ = 0;
}

std::vector<std::pair<std::string, uint64_t>> ClickHouseReader::DuplicateCopies(
    std::string_view app) const {
  std::vector<std::pair<std::string, uint64_t>> copies;
  std::lock_guard lock(duplicates_mu_);
  const int64_t now = NowMs();
  if (now - duplicates_loaded_ms_ >= kDuplicatesRefreshMs) {
    auto body = client_->Execute("SELECT DISTINCT app, ord FROM " + tables_("duplicates") +
                                 " FORMAT TabSeparated");
    auto rows = body.ok() ? ParseTsv(*body) : Result<Rows>(body.status());
    // A failure here leaves the last list; the statement it is for will
    // most likely fail the same way.
    if (rows.ok()) {
      duplicates_.clear();
      for (const auto& r : *rows) {
        if (r.size() == 2) duplicates_.emplace_back(r[0], UInt(r[1]));
      }
      duplicates_loaded_ms_ = now;
    }
  }
  for (const auto& d : duplicates_) {
    if (app.empty() || d.first == app) copies.push_back(d);
  }
  return copies;
}

std::string ClickHouseReader::DuplicatesClause(std::string_view app) const {
  const auto copies = DuplicateCopies(app);
  if (copies.empty()) return "";
  std::string list;
  for (const auto& [copy_app, ord] : copies) {
    list += list.empty() ? "" : ", ";
    list += app.empty() ? "(" + SqlQuote(copy_app) + ", " + std::to_string(ord) + ")"
                        : std::to_string(ord);
  }
  return (app.empty() ? "(app, ord) NOT IN (" : "ord NOT IN (") + list + ")";
}

void ClickHouseReader::SetRetention(const RetentionPolicy& policy) {
  std::lock_guard lock(retention_mu_);
  retention_ = policy;
}

std::string ClickHouseReader::RetentionKeep(std::string_view app, const std::string& column,
                                            int64_t now_ms) const {
  std::lock_guard lock(retention_mu_);
  const auto cut = [&](int days) {
    return column + " >= " + std::to_string(RetentionCutMs(now_ms, days));
  };
  if (!app.empty()) {
    const int days = retention_.DaysFor(app);
    return days > 0 ? cut(days) : "";
  }
  if (retention_.empty()) return "";
  std::string keep = retention_.default_days > 0 ? cut(retention_.default_days) : "1";
  for (const auto& [id, days] : retention_.app_days) {
    if (days <= 0) continue;
    keep = "if(app = " + SqlQuote(id) + ", " + cut(days) + ", " + keep + ")";
  }
  return keep;
}

std::string ClickHouseReader::Live(std::string_view app, const std::string& where,
                                   const std::string& columns, std::string_view table) const {
  std::string conditions;
  if (!app.empty()) conditions = "app = " + SqlQuote(app);
  // Not older than the app's retention (until a mutation removes those rows).
  const std::string keep = RetentionKeep(app, "time", NowMs());
  if (!keep.empty()) conditions += (conditions.empty() ? "(" : " AND (") + keep + ")";
  if (!where.empty()) conditions += (conditions.empty() ? "(" : " AND (") + where + ")";
  std::string sql = "(SELECT * FROM (SELECT app, user_h, ord";
  if (!columns.empty()) sql += ", " + columns;
  sql += " FROM " + tables_(table);
  // Not the second copy of an event two nodes stored at once (rare: listed
  // as literals, since a subquery would cost every row a lookup).
  const std::string copies = DuplicatesClause(app);
  if (!copies.empty()) conditions += (conditions.empty() ? "" : " AND ") + copies;
  if (!conditions.empty()) sql += " WHERE " + conditions;
  // Not the rows of a deleted user stored before the delete. For one app the
  // join is on the user hash alone: a number key costs a row about a third
  // of what (app, user hash) does.
  const std::string key = app.empty() ? "app, user_h" : "user_h";
  sql += ") ANY LEFT JOIN (SELECT " + key + ", max(ord) AS del_ord FROM " + tables_("deletions");
  if (!app.empty()) sql += " WHERE app = " + SqlQuote(app);
  sql += " GROUP BY " + key + ") USING " + key + " WHERE ord > del_ord)";
  return sql;
}

std::string ClickHouseReader::Sessions(std::string_view app, const std::string& where,
                                       bool context) const {
  std::string columns = "sess_h, device, session, type, time";
  std::string aggregates =
      "sess_h, any(device) AS device, any(session) AS session, min(ord) AS created,"
      " countIf(type = 1) AS inits, if(inits > 0, minIf(time, type = 1), min(time)) AS sstart,"
      " max(time) AS ev_end, count() AS actions, countIf(type = 3) AS errors";
  std::string outer =
      "sess_h, device, session, created, inits, sstart,"
      " if(hbs > 0 AND hb_end > ev_end, hb_end, ev_end) AS send, actions, errors";
  if (context) {
    aggregates += std::string(", countIf") + kCarries + " AS carriers";
    outer += ", carriers";
    for (const char* c : kContextColumns) {
      columns += std::string(", ") + c;
      aggregates += std::string(", argMinIf(") + c + ", (time, ord), type = 1) AS i_" + c;
      outer += std::string(", i_") + c;
    }
    for (const char* c : kContextColumns) {
      aggregates += std::string(", argMaxIf(") + c + ", (time, ord), " + kCarries + ") AS c_" + c;
      outer += std::string(", c_") + c;
    }
  }
  const std::string app_q = SqlQuote(app);
  std::string heartbeats = "SELECT sess_h, ord, r FROM " + tables_("heartbeats") +
                           " WHERE app = " + app_q + (where.empty() ? "" : " AND (" + where + ")");
  return "SELECT " + outer + " FROM (SELECT " + aggregates + " FROM " + Live(app, where, columns) +
         " GROUP BY sess_h) ANY LEFT JOIN (SELECT sess_h, max(r) AS hb_end, count() AS hbs FROM (" +
         heartbeats + ") ANY LEFT JOIN (SELECT sess_h, max(ord) AS reset_ord FROM " +
         tables_("session_resets") + " WHERE app = " + app_q +
         " GROUP BY sess_h) USING sess_h WHERE ord > reset_ord GROUP BY sess_h) USING sess_h";
}

Result<std::vector<ClickHouseReader::SessionRow>> ClickHouseReader::LoadSessions(
    std::string_view app, const std::string& where) {
  auto rows = Query(Sessions(app, where, /*context=*/true));
  if (!rows.ok()) return rows.status();
  std::vector<SessionRow> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    if (r.size() < 10 + 2 * kContextCount) return Status::Internal("short session row");
    SessionRow s;
    s.hash = UInt(r[0]);
    s.device = r[1];
    s.session = r[2];
    s.created = UInt(r[3]);
    s.inits = Int(r[4]);
    s.start = Int(r[5]);
    s.end = Int(r[6]);
    s.actions = Int(r[7]);
    s.errors = Int(r[8]);
    s.carriers = Int(r[9]);
    ReadContext(r, 10, &s.init_context);
    ReadContext(r, 10 + kContextCount, &s.carry_context);
    out.push_back(std::move(s));
  }
  return out;
}

// ---- Answers from the rollups --------------------------------------------
//
// Quick glance and daily analytics read the rollups (user_buckets,
// init_values, session_parts: schema v5) instead of every
// event, and stay exact:
// - only whole 15-minute buckets inside the range come from user_buckets and
//   init_values; the range's ragged edges are read from the events;
// - users who were deleted (or hold a hidden second copy of an event) are
//   read from the events, the rollups of everyone else are used as they are:
//   numbers per user add up across the two parts;
// - sessions that lost events to a delete, that contain a deleted user's or
//   a hidden copy's event, or that straddle the retention cut are rebuilt
//   from their events (Sessions), every other one from session_parts.

namespace {

constexpr int64_t kBucketMs = 900000;
// The apps whose last list of rebuilt sessions is kept (WithListedSessions).
constexpr size_t kListedApps = 1000;
// Up to this many excluded users and sessions are listed in the statements.
constexpr size_t kListedExclusions = 20000;

std::string UnionAll(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : " UNION ALL ") + p;
  return out;
}

}  // namespace

struct ClickHouseReader::RollupPlan {
  std::string app_id;
  std::string app;     // quoted
  int64_t cut_ms = 0;  // the app's retention cut; 0: none
  // The user_h read from the events and the sess_h rebuilt from them, as
  // what goes inside IN (...): a list of numbers or a subquery; "": none.
  // The sessions are a subquery until ListSessions lists them.
  std::string users_out;
  std::string sessions_out;
  bool sessions_listed = false;
  // The range: buckets [b_lo, b_hi] whole inside it (none when b_lo > b_hi).
  int64_t b_lo = 0, b_hi = -1;
  std::string in_range;  // over events: time in the range

  // Makes the plan's range [from_ms, to_ms].
  void Cover(int64_t from_ms, int64_t to_ms) {
    in_range = Range(from_ms, to_ms);
    b_lo = FloorDiv(from_ms + kBucketMs - 1, kBucketMs);
    b_hi = FloorDiv(to_ms + 1, kBucketMs) - 1;
    if (cut_ms > 0) b_lo = std::max(b_lo, cut_ms / kBucketMs);
  }

  std::string RollupWhere() const {
    std::string w = "app = " + app + " AND bucket >= " + std::to_string(b_lo) +
                    " AND bucket <= " + std::to_string(b_hi);
    if (!users_out.empty()) w += " AND user_h NOT IN (" + users_out + ")";
    return w;
  }
  // Events of the range read as they are: the edges, and the excluded
  // users'. `by_user`: the latter, which `user_events` (ordered by user)
  // holds in a few granules where `event_times` would be read whole.
  struct RawRead {
    std::string where;
    bool by_user = false;
  };
  std::vector<RawRead> RawReads() const {
    if (b_lo > b_hi) return {{in_range}};
    const std::string inside = "time >= " + std::to_string(b_lo * kBucketMs) + " AND time < " +
                               std::to_string((b_hi + 1) * kBucketMs);
    std::vector<RawRead> out = {{in_range + " AND NOT (" + inside + ")"}};
    if (!users_out.empty()) out.push_back({inside + " AND user_h IN (" + users_out + ")", true});
    return out;
  }
};

Result<ClickHouseReader::RollupPlan> ClickHouseReader::PlanRollups(std::string_view app,
                                                                   int64_t from_ms, int64_t to_ms) {
  RollupPlan plan;
  plan.app_id = std::string(app);
  plan.app = SqlQuote(app);
  {
    std::lock_guard lock(retention_mu_);
    const int days = retention_.DaysFor(app);
    if (days > 0) plan.cut_ms = RetentionCutMs(NowMs(), days);
  }
  auto counts = Query("SELECT (SELECT count() FROM " + tables_("deletions") +
                      " WHERE app = " + plan.app + "), (SELECT count() FROM " +
                      tables_("session_resets") + " WHERE app = " + plan.app + ")");
  if (!counts.ok()) return counts.status();
  const bool deletions = !counts->empty() && Int((*counts)[0][0]) > 0;
  const bool resets = !counts->empty() && (*counts)[0].size() > 1 && Int((*counts)[0][1]) > 0;
  std::vector<uint64_t> copies;
  for (const auto& c : DuplicateCopies(app)) copies.push_back(c.second);

  std::vector<std::string> users, sessions;
  const std::string deleted =
      "SELECT user_h FROM " + tables_("deletions") + " WHERE app = " + plan.app;
  if (deletions) {
    users.push_back(deleted);
    sessions.push_back("SELECT sess_h FROM (SELECT sess_h, finalizeAggregation(users) AS us FROM " +
                       tables_("session_parts") + " WHERE app = " + plan.app +
                       ") ARRAY JOIN us AS u WHERE u IN (" + deleted + ")");
  }
  if (resets) {
    sessions.push_back("SELECT sess_h FROM " + tables_("session_resets") +
                       " WHERE app = " + plan.app);
  }
  if (!copies.empty()) {
    const std::string of_copies = " FROM " + tables_("events") + " WHERE app = " + plan.app +
                                  " AND ord IN " + NumberList(copies);
    users.push_back("SELECT user_h" + of_copies);
    sessions.push_back("SELECT sess_h" + of_copies);
  }
  if (plan.cut_ms > 0) {
    sessions.push_back("SELECT sess_h FROM (" +
                       MergedSessions(plan.app,
                                      "sess_h, finalizeAggregation(first) AS f,"
                                      " finalizeAggregation(last) AS l") +
                       ") WHERE f < " + std::to_string(plan.cut_ms) +
                       " AND l >= " + std::to_string(plan.cut_ms));
  }
  // The users now; the sessions (a scan of every session's users) only
  // when a statement needs them, meanwhile the others run (ListSessions).
  auto users_out = Listed(UnionAll(users));
  if (!users_out.ok()) return users_out.status();
  plan.users_out = *users_out;
  plan.sessions_out = UnionAll(sessions);

  plan.Cover(from_ms, to_ms);
  return plan;
}

Result<std::string> ClickHouseReader::Listed(const std::string& subquery) {
  // Usually a short list (a few deleted users, their sessions): read once
  // and written into the statements as numbers, rather than a subquery that
  // ClickHouse would run again for every IN that names it.
  if (subquery.empty()) return subquery;
  auto rows = Query("SELECT DISTINCT * FROM (" + subquery + ") LIMIT " +
                    std::to_string(kListedExclusions + 1));
  if (!rows.ok()) return rows.status();
  if (rows->size() > kListedExclusions) return subquery;
  std::vector<uint64_t> listed;
  for (const auto& r : *rows) {
    if (r.size() == 1) listed.push_back(UInt(r[0]));
  }
  if (listed.empty()) return std::string();
  const std::string list = NumberList(listed);  // "(1, 2)"
  return list.substr(1, list.size() - 2);
}

Status ClickHouseReader::ListSessions(RollupPlan* plan) {
  if (plan->sessions_listed) return Status::Ok();
  auto listed = Listed(plan->sessions_out);
  if (!listed.ok()) return listed.status();
  plan->sessions_out = *listed;
  plan->sessions_listed = true;
  return Status::Ok();
}

Status ClickHouseReader::WithListedSessions(
    RollupPlan* plan, const std::function<Status(const RollupPlan&)>& merge) {
  if (plan->sessions_listed || plan->sessions_out.empty()) {
    NUCLEON_RETURN_IF_ERROR(ListSessions(plan));
    return merge(*plan);
  }
  // The list the app's last answer found, for the same exclusions.
  const std::string key = plan->app_id + "\n" + plan->sessions_out;
  std::optional<std::string> guess;
  {
    std::lock_guard lock(listed_mu_);
    auto it = listed_.find(key);
    if (it != listed_.end()) guess = it->second;
  }
  RollupPlan guessed;
  std::future<Status> early;
  if (guess) {
    guessed = *plan;
    guessed.sessions_out = *guess;
    guessed.sessions_listed = true;
    early = std::async(std::launch::async, [&] { return merge(guessed); });
  }
  const Status listed = ListSessions(plan);
  if (listed.ok()) {
    std::lock_guard lock(listed_mu_);
    if (listed_.size() >= kListedApps && listed_.count(key) == 0) listed_.clear();
    listed_[key] = plan->sessions_out;
  }
  if (early.valid()) {
    const Status st = early.get();
    if (!listed.ok()) return listed;
    if (plan->sessions_out == guessed.sessions_out) return st;
  }
  if (!listed.ok()) return listed;
  return merge(*plan);
}

std::string ClickHouseReader::MergedSessions(const std::string& app, const std::string& columns,
                                             const std::string& where) const {
  // FINAL merges each session's parts as they are read, in key order: three
  // times faster here than GROUP BY over the states, which hashes every key.
  // `where` may name only key columns (sess_h, dev_h): a condition on a
  // state would filter parts before they are merged.
  return "SELECT sess_h, " + columns + " FROM " + tables_("session_parts") +
         " FINAL WHERE app = " + app + (where.empty() ? "" : " AND " + where);
}

std::string ClickHouseReader::RollupSessions(const RollupPlan& plan) const {
  // start_key decoded (schema: session_parts); a session only heartbeats
  // reached (no event) is none. Every session is merged, also for a short
  // range: with FINAL that costs less than first finding the sessions or
  // devices that can start in it (80 against 240-350 ms at 10M events).
  const auto decoded = [](const std::string& key) {
    return "(toInt64(" + key + " % 4611686018427387904) - 2305843009213693952)";
  };
  std::string where;
  if (!plan.sessions_out.empty()) where = "sess_h NOT IN (" + plan.sessions_out + ")";
  std::string out =
      "SELECT dev_h, " + decoded("k") + " AS sstart, send FROM (" +
      MergedSessions(plan.app,
                     "dev_h, finalizeAggregation(start_key) AS k,"
                     " finalizeAggregation(first) AS f, finalizeAggregation(last) AS send",
                     where) +
      ") WHERE k < 18446744073709551615";
  if (plan.cut_ms > 0) out += " AND f >= " + std::to_string(plan.cut_ms);
  if (!plan.sessions_out.empty()) {
    out += " UNION ALL SELECT cityHash64(device), sstart, send FROM (" +
           Sessions(plan.app_id, "sess_h IN (" + plan.sessions_out + ")", false) + ")";
  }
  return out;
}

Result<std::vector<QuickGlanceCounts>> ClickHouseReader::QuickGlances(
    std::string_view app, std::span<const TimeSpan> periods) {
  std::vector<QuickGlanceCounts> out(periods.size());
  if (periods.empty()) return out;
  int64_t from_ms = periods[0].from_ms, to_ms = periods[0].to_ms;
  for (const TimeSpan& p : periods) {
    from_ms = std::min(from_ms, p.from_ms);
    to_ms = std::max(to_ms, p.to_ms);
  }
  // One plan, one statement for the counts and one merge of the sessions
  // for every period: each row read is tagged with its period.
  auto plan = PlanRollups(app, from_ms, to_ms);
  if (!plan.ok()) return plan.status();
  std::vector<std::string> parts;
  std::string installs;  // one count per period
  for (size_t i = 0; i < periods.size(); ++i) {
    RollupPlan period = *plan;
    period.Cover(periods[i].from_ms, periods[i].to_ms);
    const std::string tag = "SELECT toUInt32(" + std::to_string(i) + ") AS p, user_h, ";
    if (period.b_lo <= period.b_hi) {
      parts.push_back(tag +
                      "finalizeAggregation(inits) AS i, finalizeAggregation(errors) AS e FROM " +
                      tables_("user_buckets") + " WHERE " + period.RollupWhere());
    }
    for (const auto& raw : period.RawReads()) {
      parts.push_back(tag + "toUInt64(type = 1) AS i, toUInt64(type = 3) AS e FROM " +
                      Live(app, raw.where, "type", raw.by_user ? "user_events" : "event_times"));
    }
    installs += (i ? ", countIf(t >= " : "countIf(t >= ") + std::to_string(periods[i].from_ms) +
                " AND t <= " + std::to_string(periods[i].to_ms) + ")";
  }
  // Both statements at once (as in Daily).
  const std::string counts_sql =
      "SELECT p, uniqExact(user_h), sum(i), sum(e) FROM (" + UnionAll(parts) + ") GROUP BY p";
  auto rows_f = std::async(std::launch::async, [&] { return Query(counts_sql); });
  // Installs: the devices whose first session starts in the period.
  Rows firsts;
  const Status merged = WithListedSessions(&*plan, [&](const RollupPlan& p) {
    auto r = Query("SELECT " + installs + " FROM (SELECT dev_h, min(sstart) AS t FROM (" +
                   RollupSessions(p) + ") GROUP BY dev_h)");
    if (!r.ok()) return r.status();
    firsts = std::move(*r);
    return Status::Ok();
  });
  auto rows = rows_f.get();
  if (!rows.ok()) return rows.status();
  if (!merged.ok()) return merged;
  for (const auto& r : *rows) {
    if (r.size() != 4) return Status::Internal("quick glance: unexpected row");
    const size_t i = static_cast<size_t>(Int(r[0]));
    if (i >= out.size()) return Status::Internal("quick glance: unknown period");
    out[i].users = Int(r[1]);
    out[i].app_starts = Int(r[2]);
    out[i].errors = Int(r[3]);
  }
  if (firsts.size() != 1 || firsts.front().size() != out.size()) {
    return Status::Internal("quick glance: unexpected installs row");
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].installs = Int(firsts.front()[i]);
  return out;
}

Result<DailyAnalytics> ClickHouseReader::Daily(std::string_view app, const QueryRange& range) {
  const int off = range.utc_offset_min;
  auto plan = PlanRollups(app, range.from_ms, range.to_ms);
  if (!plan.ok()) return plan.status();
  // Local days and hours follow bucket edges only for offsets in whole
  // quarter hours (every time zone in use); for any other, no bucket is
  // whole inside a local hour and the range is read from event_times.
  if (off % 15 != 0) plan->b_hi = plan->b_lo - 1;
  const bool inside = plan->b_lo <= plan->b_hi;
  const std::vector<RollupPlan::RawRead> raw = plan->RawReads();
  DailyAnalytics out;

  // Users in range and active users per day; app starts per local hour
  // apart (summing them per hour costs a fraction of carrying 24 counts
  // along with every user and day).
  std::vector<std::string> users, starts;
  if (inside) {
    const std::string rollup = " FROM (SELECT bucket * 900000 AS b, user_h, inits FROM " +
                               tables_("user_buckets") + " WHERE " + plan->RollupWhere() + ")";
    users.push_back("SELECT " + Day("b", off) + " AS d, user_h" + rollup);
    starts.push_back("SELECT " + HourIndex("b", off) + " AS h, finalizeAggregation(inits) AS n" +
                     rollup);
  }
  for (const auto& r : raw) {
    const char* table = r.by_user ? "user_events" : "event_times";
    users.push_back("SELECT " + Day("time", off) + " AS d, user_h FROM " +
                    Live(app, r.where, "time", table));
    starts.push_back("SELECT " + HourIndex("time", off) + " AS h, toUInt64(1) AS n FROM " +
                     Live(app, r.where + " AND type = 1", "time", table));
  }
  const std::string days_sql =
      "SELECT d, uniqExact(user_h) FROM (" + UnionAll(users) + ") GROUP BY d WITH TOTALS";
  const std::string hours_sql = "SELECT h, sum(n) FROM (" + UnionAll(starts) + ") GROUP BY h";

  // New users: whose first event (after the retention cut) is in range.
  std::string kept = "app = " + plan->app;
  if (plan->cut_ms > 0) kept += " AND bucket >= " + std::to_string(plan->cut_ms / kBucketMs);
  if (!plan->users_out.empty()) kept += " AND user_h NOT IN (" + plan->users_out + ")";
  std::string firsts;
  if (off % 15 == 0) {
    // A user's first bucket is enough to place its first event in a local
    // day, and in the range unless it is one of the range's two edge
    // buckets: only there is the first event's time read (its state is
    // several times dearer to merge than the bucket number).
    const std::string lo = std::to_string(FloorDiv(range.from_ms, kBucketMs));
    const std::string hi = std::to_string(FloorDiv(range.to_ms, kBucketMs));
    firsts = "SELECT user_h, if(mb > " + lo + " AND mb < " + hi +
             ", mb * 900000, ef) AS f FROM (SELECT user_h, min(bucket) AS mb FROM " +
             tables_("user_buckets") + " WHERE " + kept + " GROUP BY user_h HAVING mb >= " + lo +
             " AND mb <= " + hi + ") ANY LEFT JOIN (SELECT user_h, minMerge(first) AS ef FROM " +
             tables_("user_buckets") + " WHERE " + kept + " AND bucket IN (" + lo + ", " + hi +
             ") GROUP BY user_h) USING user_h";
  } else {
    firsts = "SELECT user_h, minMerge(first) AS f FROM " + tables_("user_buckets") + " WHERE " +
             kept + " GROUP BY user_h";
  }
  if (!plan->users_out.empty()) {
    firsts += " UNION ALL SELECT user_h, min(time) AS f FROM " +
              Live(app, "user_h IN (" + plan->users_out + ")", "time", "user_events") +
              " GROUP BY user_h";
  }
  const std::string fresh_sql = "SELECT " + Day("f", off) + " AS d, count() FROM (" + firsts +
                                ") WHERE f >= " + std::to_string(range.from_ms) +
                                " AND f <= " + std::to_string(range.to_ms) + " GROUP BY d";

  // Breakdowns: distinct users per value their app starts carried.
  constexpr const char* kValues = "user_h, platform_n, language, version, country, ram_n";
  std::vector<std::string> parts;
  if (inside) {
    parts.push_back(std::string("SELECT ") + kValues + " FROM " + tables_("init_values") +
                    " WHERE " + plan->RollupWhere());
  }
  for (const auto& r : raw) {
    // The values are in event_times only, ordered by time: the excluded
    // users' app starts are found there by their times, which user_events
    // (ordered by user) lists in a few granules, so that only the granules
    // holding those times are read rather than the whole range.
    std::string where = r.where + " AND type = 1";
    if (r.by_user) {
      where += " AND time IN (SELECT time FROM " + tables_("user_events") +
               " WHERE app = " + plan->app + " AND " + where + ")";
    }
    parts.push_back(
        std::string("SELECT ") + kValues + " FROM " +
        Live(app, where, "platform_n, language, version, country, ram_n", "event_times"));
  }
  const std::string breakdowns_sql =
      "SELECT dim, val, uniqExact(user_h) FROM (" + UnionAll(parts) +
      ") ARRAY JOIN ['p', 'l', 'v', 'c', 'r'] AS dim, [platform_n, language, version, country,"
      " ram_n] AS val WHERE val != '' GROUP BY dim, val";

  // The five statements at once: the answer takes as long as the slowest
  // rather than their sum (ClickHouse runs each on threads of its own).
  auto days_f = std::async(std::launch::async, [&] { return Query(days_sql); });
  auto hours_f = std::async(std::launch::async, [&] { return Query(hours_sql); });
  auto fresh_f = std::async(std::launch::async, [&] { return Query(fresh_sql); });
  auto breakdowns_f = std::async(std::launch::async, [&] { return Query(breakdowns_sql); });
  Result<SessionStatsOf> sessions = SessionStatsOf{};
  const Status merged = WithListedSessions(&*plan, [&](const RollupPlan& p) {
    sessions = SessionStats(p, range);
    return sessions.status();
  });
  auto days = days_f.get();
  auto hours = hours_f.get();
  auto fresh = fresh_f.get();
  auto breakdowns = breakdowns_f.get();
  for (const Status& st :
       {days.status(), hours.status(), fresh.status(), breakdowns.status(), merged}) {
    if (!st.ok()) return st;
  }
  bool totals = false;
  for (const auto& r : *days) {
    if (r.size() == 1 && r[0].empty()) {
      totals = true;  // the blank line before the totals row
      continue;
    }
    if (r.size() != 2) return Status::Internal("daily: unexpected row");
    (totals ? out.users : out.active_users[Int(r[0])]) = Int(r[1]);
  }
  for (const auto& r : *hours) {
    if (r.size() != 2) return Status::Internal("daily: unexpected hour row");
    const int64_t n = Int(r[1]);
    if (n == 0) continue;
    const int64_t h = Int(r[0]);
    const int64_t day = FloorDiv(h, 24);
    out.usage[day] += n;
    out.hours[day][static_cast<size_t>(h - day * 24)] += n;
  }

  for (const auto& r : *fresh) out.new_users[Int(r[0])] = Int(r[1]);
  AddBreakdowns(*breakdowns, &out);
  out.installs = sessions->installs;
  for (const auto& [d, s] : sessions->days) out.avg_session_duration[d] = MeanSessionSeconds(s);
  return out;
}

Result<ClickHouseReader::SessionStatsOf> ClickHouseReader::SessionStats(const RollupPlan& plan,
                                                                        const QueryRange& range) {
  // One merge of the sessions for both: per device its first session's
  // start and the sessions it started in range, then one element per such
  // session (day, 1, seconds, 0) and one for the device's first session
  // (day, 0, 0, whether it is in range: an install).
  const std::string from = std::to_string(range.from_ms), to = std::to_string(range.to_ms);
  const int off = range.utc_offset_min;
  const std::string per_device =
      "SELECT dev_h, min(sstart) AS first, groupArrayIf((sstart, send), sstart >= " + from +
      " AND sstart <= " + to + ") AS ins FROM (" + RollupSessions(plan) +
      ") GROUP BY dev_h HAVING first <= " + to + " AND (first >= " + from + " OR notEmpty(ins))";
  auto rows = Query("SELECT e.1 AS d, sum(e.2), sum(e.3), sum(e.4) FROM (" + per_device +
                    ") ARRAY JOIN arrayPushBack(arrayMap(s -> (" + Day("s.1", off) +
                    ", toUInt64(1), intDiv(s.2 - s.1, 1000), toUInt64(0)), ins), (" +
                    Day("first", off) + ", toUInt64(0), toInt64(0), toUInt64(first >= " + from +
                    " AND first <= " + to + "))) AS e GROUP BY d");
  if (!rows.ok()) return rows.status();
  SessionStatsOf out;
  for (const auto& r : *rows) {
    if (r.size() < 4) return Status::Internal("short session day row");
    const int64_t n = Int(r[1]);
    if (n > 0) out.days[Int(r[0])] = {n, Int(r[2])};
    out.installs += Int(r[3]);
  }
  return out;
}

Result<SessionDays> ClickHouseReader::SessionDaysOf(const RollupPlan& plan,
                                                    const QueryRange& range) {
  auto rows = Query("SELECT " + Day("sstart", range.utc_offset_min) +
                    " AS d, count(), sum(intDiv(send - sstart, 1000)) FROM (" +
                    RollupSessions(plan) + ") WHERE sstart >= " + std::to_string(range.from_ms) +
                    " AND sstart <= " + std::to_string(range.to_ms) + " GROUP BY d");
  if (!rows.ok()) return rows.status();
  SessionDays out;
  for (const auto& r : *rows) {
    if (r.size() < 3) return Status::Internal("short session day row");
    out[Int(r[0])] = {Int(r[1]), Int(r[2])};
  }
  return out;
}

Result<SessionDays> ClickHouseReader::SessionsByDay(std::string_view app, const QueryRange& range) {
  auto plan = PlanRollups(app, range.from_ms, range.to_ms);
  if (!plan.ok()) return plan.status();
  Result<SessionDays> days = SessionDays{};
  NUCLEON_RETURN_IF_ERROR(WithListedSessions(&*plan, [&](const RollupPlan& p) {
    days = SessionDaysOf(p, range);
    return days.status();
  }));
  return days;
}

Result<DailyCounts> ClickHouseReader::EventCounts(std::string_view app, const QueryRange& range,
                                                  bool errors) {
  auto rows =
      Query("SELECT name, " + Day("time", range.utc_offset_min) + " AS d, count() FROM " +
            (errors ? Live(app, Range(range.from_ms, range.to_ms), "name, time", "error_times")
                    : Live(app, Range(range.from_ms, range.to_ms) + " AND type = 2", "name, time",
                           "event_times")) +
            " GROUP BY name, d");
  if (!rows.ok()) return rows.status();
  DailyCounts out;
  for (const auto& r : *rows) out[r[0]][Int(r[1])] = Int(r[2]);
  return out;
}

Result<std::vector<EventPropKeys>> ClickHouseReader::EventProps(std::string_view app,
                                                                const QueryRange& range) {
  // The distinct lists of keys per event name (events mostly repeat the
  // same few), from event_times rather than from the events' props.
  auto rows = Query("SELECT if(type = 1, 'init', name) AS ev, prop_list FROM " +
                    Live(app, Range(range.from_ms, range.to_ms) + " AND type IN (1, 2)",
                         "type, name, prop_list", "event_times") +
                    " GROUP BY ev, prop_list");
  if (!rows.ok()) return rows.status();
  std::map<std::pair<std::string, std::string>, std::set<std::string>> grouped;
  for (const auto& r : *rows) {
    if (r.size() < 2) continue;
    ForEachListedProp(r[1], [&](int kind, std::string_view key) {
      grouped[{r[0], std::string(PropKindName(static_cast<PropValue::Kind>(kind)))}].emplace(key);
    });
  }
  std::vector<EventPropKeys> out;
  for (auto& [key, keys] : grouped) {
    out.push_back({key.first, std::vector<std::string>(keys.begin(), keys.end()), key.second});
  }
  return out;
}

Result<std::vector<ValueCount>> ClickHouseReader::EventAttribute(std::string_view app,
                                                                 const QueryRange& range,
                                                                 std::string_view event,
                                                                 std::string_view attr) {
  // From prop_values: the range's rows of that event (or of the app
  // starts) only.
  auto rows =
      Query("SELECT text, count() FROM (SELECT k, text FROM " +
            Live(app, "ev = " + SqlQuote(event) + " AND " + Range(range.from_ms, range.to_ms),
                 "prop_keys, prop_texts", "prop_values") +
            " ARRAY JOIN prop_keys AS k, prop_texts AS text) WHERE k = " + SqlQuote(attr) +
            " GROUP BY text");
  if (!rows.ok()) return rows.status();
  std::vector<ValueCount> out;
  for (const auto& r : *rows) out.push_back({r[0], Int(r[1])});
  SortCounts(&out);
  return out;
}

Result<std::vector<UserSummary>> ClickHouseReader::Summaries(
    std::string_view app, const std::vector<std::string>& keys,
    std::vector<std::vector<SessionSummary>>* sessions_out) {
  std::vector<UserSummary> out(keys.size());
  if (keys.empty()) return out;
  std::unordered_map<std::string, size_t> index;
  std::vector<uint64_t> user_hashes;
  for (size_t i = 0; i < keys.size(); ++i) {
    index[keys[i]] = i;
    user_hashes.push_back(UserHash(app, keys[i]));
  }
  // The users' rows of user_events (a few granules each).
  const std::string theirs =
      "user_h IN " + NumberList(user_hashes) + " AND user_key IN " + QuoteList(keys);
  // The props of each user's own init, props and userid events, later wins:
  // read meanwhile (the statements below do not depend on them).
  const std::string payloads_sql =
      "SELECT user_key, payload FROM " +
      Live(app, theirs + " AND type IN (1, 4, 5)", "user_key, payload, time", "user_events") +
      " ORDER BY time, ord";
  auto payloads_f = std::async(std::launch::async, [&] { return Query(payloads_sql); });
  // Which sessions each user is in, and when each user was created.
  auto links = Query("SELECT user_key, sess_h, device, min(time) FROM " +
                     Live(app, theirs, "user_key, sess_h, device, time", "user_events") +
                     " GROUP BY user_key, sess_h, device");
  if (!links.ok()) return links.status();
  std::vector<std::vector<uint64_t>> user_sessions(keys.size());
  std::set<std::string> devices;
  std::vector<uint64_t> hashes;
  std::vector<int64_t> created(keys.size(), INT64_MAX);
  for (const auto& r : *links) {
    const size_t i = index[r[0]];
    user_sessions[i].push_back(UInt(r[1]));
    hashes.push_back(UInt(r[1]));
    devices.insert(r[2]);
    created[i] = std::min(created[i], Int(r[3]));
  }
  std::unordered_map<uint64_t, SessionRow> by_hash;
  if (!hashes.empty()) {
    auto rows = LoadSessions(app, "device IN " + QuoteList({devices.begin(), devices.end()}) +
                                      " AND sess_h IN " + NumberList(hashes));
    if (!rows.ok()) return rows.status();
    for (SessionRow& s : *rows) by_hash.emplace(s.hash, std::move(s));
  }
  std::vector<std::map<std::string, std::string>> props(keys.size());
  auto payloads = payloads_f.get();
  if (!payloads.ok()) return payloads.status();

  for (size_t i = 0; i < keys.size(); ++i) {
    UserSummary& s = out[i];
    s.id = UserDbId(app, keys[i]);
    s.user_key = keys[i];
    s.created_ms = created[i];
    std::map<std::string, const SessionRow*> latest;  // per device
    std::map<std::string, int64_t> last_seen;
    const SessionRow* newest = nullptr;
    std::vector<const SessionRow*> mine;
    for (uint64_t h : user_sessions[i]) {
      auto it = by_hash.find(h);
      if (it == by_hash.end()) continue;
      const SessionRow& si = it->second;
      mine.push_back(&si);
      s.last_seen_ms = std::max(s.last_seen_ms, si.end);
      auto& l = latest[si.device];
      if (!l || si.LaterThan(*l)) l = &si;
      auto [ls, added] = last_seen.emplace(si.device, si.end);
      if (!added) ls->second = std::max(ls->second, si.end);
      if (!newest || si.LaterThan(*newest)) newest = &si;
    }
    for (const auto& [device, si] : latest) {
      DeviceSummary d;
      d.device_id = device;
      d.last_seen_ms = last_seen[device];
      if (const Event* ctx = si->Context()) {
        if (!ctx->platform.empty()) d.platform = NormalizePlatform(ctx->platform);
        if (!ctx->os_version.empty()) d.os_version = ctx->os_version;
        if (!ctx->version.empty()) d.version = ctx->version;
      }
      s.devices.push_back(std::move(d));
    }
    std::sort(s.devices.begin(), s.devices.end(),
              [](const DeviceSummary& a, const DeviceSummary& b) {
                return a.last_seen_ms != b.last_seen_ms ? a.last_seen_ms < b.last_seen_ms
                                                        : a.device_id < b.device_id;
              });
    if (newest) {
      if (const Event* ctx = newest->Context()) {
        if (!ctx->country.empty()) {
          props[i]["country"] = PropJson(PropValue{PropValue::Kind::kString, ctx->country});
        }
        const std::string lang = LanguageOf(ctx->locale);
        if (!lang.empty()) props[i]["locale"] = PropJson(PropValue{PropValue::Kind::kString, lang});
      }
    }
    if (sessions_out) {
      std::sort(mine.begin(), mine.end(), [](const SessionRow* a, const SessionRow* b) {
        if (a->start != b->start) return a->start > b->start;
        return a->session != b->session ? a->session > b->session : a->device > b->device;
      });
      auto& list = (*sessions_out)[i];
      for (const SessionRow* si : mine) {
        list.push_back({si->session, si->device, si->start, si->end, si->actions, si->errors});
      }
    }
  }
  for (const auto& r : *payloads) {
    auto& p = props[index[r[0]]];
    for (const auto& [key, value] : ParsePayloadProps(r[1])) p[key] = PropJson(value);
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    // country and locale first, then the custom props in key order.
    for (const char* k : {"country", "locale"}) {
      auto it = props[i].find(k);
      if (it != props[i].end()) {
        out[i].props.emplace_back(it->first, it->second);
        props[i].erase(it);
      }
    }
    for (auto& [k, v] : props[i]) out[i].props.emplace_back(k, v);
  }
  return out;
}

Result<std::vector<ErrorGroup>> ClickHouseReader::ErrorGroups(std::string_view app,
                                                              const QueryRange& range) {
  // The groups from error_times (the range's granules only), then each
  // group's sample, the latest error (equal times: stored last), by its
  // order: its device from user_events (by its user), then its row from
  // events (by its device), each a few granules. A sample gone in between
  // (its user deleted meanwhile): again.
  for (int attempt = 0;; ++attempt) {
    auto rows = Query(
        "SELECT name, count(), uniqExact(user_h), min(time), max(time),"
        " argMax(ord, (time, ord)), argMax(user_h, (time, ord)) FROM " +
        Live(app, Range(range.from_ms, range.to_ms), "name, time", "error_times") +
        " GROUP BY name");
    if (!rows.ok()) return rows.status();
    std::vector<ErrorGroup> out;
    std::vector<uint64_t> samples, users;
    for (const auto& r : *rows) {
      if (r.size() != 7) return Status::Internal("error groups: unexpected row");
      ErrorGroup g;
      g.name = r[0];
      g.count = Int(r[1]);
      g.users = Int(r[2]);
      g.first_ms = Int(r[3]);
      g.last_ms = g.sample_ms = Int(r[4]);
      samples.push_back(UInt(r[5]));
      users.push_back(UInt(r[6]));
      out.push_back(std::move(g));
    }
    if (samples.empty()) return out;
    const std::string app_q = SqlQuote(app), ords = NumberList(samples);
    auto devices =
        Query("SELECT DISTINCT device FROM " + tables_("user_events") + " WHERE app = " + app_q +
              " AND user_h IN " + NumberList(users) + " AND ord IN " + ords);
    if (!devices.ok()) return devices.status();
    std::vector<std::string> device_list;
    for (const auto& r : *devices) {
      if (!r.empty()) device_list.push_back(r[0]);
    }
    if (device_list.empty()) device_list.push_back("");
    auto details =
        Query("SELECT ord, any(user_key), any(session), any(device), any(payload) FROM " +
              tables_("events") + " WHERE app = " + app_q + " AND device IN " +
              QuoteList(device_list) + " AND ord IN " + ords + " GROUP BY ord");
    if (!details.ok()) return details.status();
    std::unordered_map<uint64_t, const std::vector<std::string>*> by_ord;
    for (const auto& r : *details) {
      if (r.size() == 5) by_ord[UInt(r[0])] = &r;
    }
    bool complete = true;
    for (size_t i = 0; i < out.size() && complete; ++i) {
      auto it = by_ord.find(samples[i]);
      if (it == by_ord.end()) {
        complete = false;
        break;
      }
      const auto& r = *it->second;
      out[i].sample_user = r[1];
      out[i].sample_session = r[2];
      out[i].sample_device = r[3];
      std::tie(out[i].message, out[i].stack) = ErrorTexts(r[4]);
    }
    if (!complete) {
      if (attempt < 2) continue;
      return Status::Internal("error groups: a sample is missing");
    }
    SortErrorGroups(&out);
    return out;
  }
}

Result<UserList> ClickHouseReader::Users(std::string_view app, int64_t page, int64_t limit,
                                         std::string_view search) {
  // The rollups answer: the users from user_buckets (or, for a search, the
  // matching keys in user_events), their last seen from session_parts, and
  // only for the sessions that ended lately, as a page of the most recently
  // seen users needs (or, for a few matching users, for their sessions).
  auto plan = PlanRollups(app, 0, -1);
  if (!plan.ok()) return plan.status();
  UserList out;
  std::string known = "SELECT user_h FROM " + tables_("user_buckets") + " WHERE app = " + plan->app;
  if (plan->cut_ms > 0) known += " AND bucket >= " + std::to_string(plan->cut_ms / kBucketMs);
  if (!plan->users_out.empty()) {
    known += " AND user_h NOT IN (" + plan->users_out + ") UNION ALL SELECT user_h FROM " +
             Live(app, "user_h IN (" + plan->users_out + ")", "", "user_events");
  }
  // A search: the matching users, as a list when they are few (their
  // sessions are then all that is merged), else as a subquery.
  std::string matching;
  bool few = false;
  if (!search.empty()) {
    // lower() folds ASCII letters only, as the search promises (and as SQLite's).
    known = "SELECT user_h FROM " +
            Live(app, "position(lower(user_key), " + SqlQuote(AsciiLower(search)) + ") > 0", "",
                 "user_events");
    auto found = Query("SELECT DISTINCT user_h FROM (" + known + ") LIMIT " +
                       std::to_string(kListedExclusions + 1));
    if (!found.ok()) return found.status();
    if (found->size() <= kListedExclusions) {
      std::vector<uint64_t> hashes;
      for (const auto& r : *found) {
        if (!r.empty()) hashes.push_back(UInt(r[0]));
      }
      if (hashes.empty()) return out;
      few = true;
      const std::string list = NumberList(hashes);
      matching = list.substr(1, list.size() - 2);
    } else {
      matching = known;
    }
  }
  // The number of users and the latest session end, at once; the first
  // page is ranked while the users are counted (a later page waits for the
  // count: a page past the end needs no ranking).
  const std::string total_sql = "SELECT uniqExact(user_h) FROM (" + known + ")";
  const std::string latest_sql = "SELECT max(finalizeAggregation(last)) FROM " +
                                 tables_("session_parts") + " WHERE app = " + plan->app;
  auto total_f = std::async(std::launch::async, [&] { return Query(total_sql); });
  auto latest_f = std::async(std::launch::async, [&] { return Query(latest_sql); });
  bool total_known = false;
  const int64_t offset = (page - 1) * limit;
  const auto past_the_end = [&]() -> Result<bool> {
    if (!total_known) {
      auto total = total_f.get();
      if (!total.ok()) return total.status();
      if (total->empty() || total->front().empty()) return Status::Internal("users: no count");
      out.total = Int(total->front()[0]);
      total_known = true;
    }
    return offset >= out.total;
  };
  if (offset > 0) {
    auto past = past_the_end();
    if (!past.ok()) return past.status();
    if (*past) return out;
  }
  NUCLEON_RETURN_IF_ERROR(ListSessions(&*plan));
  auto head = latest_f.get();
  if (!head.ok()) return head.status();
  if (head->empty() || head->front().empty()) return Status::Internal("users: unexpected row");
  const int64_t latest = Int(head->front()[0]);
  const size_t need = static_cast<size_t>(offset + limit);

  // The users (matching) of the sessions that meet `restrict` (a condition
  // on sess_h; every session when empty), with their last seen, if it is
  // at least `since` (when not empty). Exact for every user seen since
  // then: such a user was seen last in a session that ended since then.
  struct Seen {
    uint64_t user_h;
    int64_t last_seen;
    int64_t created = 0;
    std::string key;
  };
  std::vector<Seen> ranked;
  const auto rank = [&](const std::string& restrict, const std::string& since) -> Status {
    std::string where;
    if (!plan->sessions_out.empty()) where = "sess_h NOT IN (" + plan->sessions_out + ")";
    std::string merged;
    if (restrict.empty()) {
      merged = MergedSessions(plan->app,
                              "finalizeAggregation(first) AS f, finalizeAggregation(last) AS send,"
                              " finalizeAggregation(users) AS us",
                              where);
    } else {
      // A few sessions: picked first, then merged by GROUP BY (FINAL would
      // merge every session before the filter).
      merged =
          "SELECT sess_h, minMerge(first) AS f, maxMerge(last) AS send,"
          " groupUniqArrayIfMerge(users) AS us FROM " +
          tables_("session_parts") + " WHERE app = " + plan->app +
          (where.empty() ? "" : " AND " + where) + " AND " + restrict + " GROUP BY sess_h";
    }
    std::string seen = "SELECT u, send FROM (" + merged + ")" +
                       (plan->cut_ms > 0 ? " WHERE f >= " + std::to_string(plan->cut_ms) : "") +
                       " ARRAY JOIN us AS u";
    if (!plan->sessions_out.empty()) {
      // Sessions rebuilt from their events, with the users in them.
      const std::string in_out = "sess_h IN (" + plan->sessions_out + ")";
      seen += " UNION ALL SELECT user_h AS u, send FROM (SELECT DISTINCT user_h, sess_h FROM " +
              Live(app, in_out, "sess_h", "event_times") +
              ") ANY INNER JOIN (SELECT sess_h, send FROM (" + Sessions(app, in_out, false) +
              ")) USING sess_h";
    }
    auto rows = Query("SELECT u, max(send) AS ls FROM (" + seen + ")" +
                      (matching.empty() ? "" : " WHERE u IN (" + matching + ")") + " GROUP BY u" +
                      (since.empty() ? "" : " HAVING ls >= " + since));
    if (!rows.ok()) return rows.status();
    ranked.clear();
    for (const auto& r : *rows) {
      if (r.size() == 2) ranked.push_back({UInt(r[0]), Int(r[1]), 0, {}});
    }
    return Status::Ok();
  };
  if (few) {
    NUCLEON_RETURN_IF_ERROR(rank("sess_h IN (SELECT sess_h FROM " + tables_("user_events") +
                                     " WHERE app = " + plan->app + " AND user_h IN (" + matching +
                                     "))",
                                 ""));
  } else {
    // The moment moves back until the page is among the users found.
    for (const int64_t span : {kDayMs, 8 * kDayMs, 64 * kDayMs, int64_t{0}}) {
      if (span == 0) {
        NUCLEON_RETURN_IF_ERROR(rank("", ""));
        break;
      }
      const std::string since = std::to_string(latest - span);
      NUCLEON_RETURN_IF_ERROR(rank("sess_h IN (SELECT sess_h FROM " + tables_("session_parts") +
                                       " WHERE app = " + plan->app +
                                       " AND finalizeAggregation(last) >= " + since + ")",
                                   since));
      if (ranked.size() >= need) break;
    }
  }
  auto past = past_the_end();
  if (!past.ok()) return past.status();
  if (*past) return out;
  std::sort(ranked.begin(), ranked.end(),
            [](const Seen& a, const Seen& b) { return a.last_seen > b.last_seen; });
  if (static_cast<size_t>(offset) >= ranked.size()) return out;
  const size_t first = static_cast<size_t>(offset), end = std::min(need, ranked.size());
  // Equal last seen: the user created later first. The page's users and
  // those tied with its first or last, with their creation and key.
  size_t lo = first, hi = end;
  while (lo > 0 && ranked[lo - 1].last_seen == ranked[first].last_seen) --lo;
  while (hi < ranked.size() && ranked[hi].last_seen == ranked[end - 1].last_seen) ++hi;
  std::vector<uint64_t> block;
  for (size_t i = lo; i < hi; ++i) block.push_back(ranked[i].user_h);
  auto made = Query("SELECT user_h, min(ord), any(user_key) FROM " +
                    Live(app, "user_h IN " + NumberList(block), "user_key", "user_events") +
                    " GROUP BY user_h");
  if (!made.ok()) return made.status();
  std::unordered_map<uint64_t, std::pair<int64_t, std::string>> by_hash;
  for (const auto& r : *made) {
    if (r.size() == 3) by_hash[UInt(r[0])] = {Int(r[1]), r[2]};
  }
  std::vector<Seen> tied(ranked.begin() + static_cast<std::ptrdiff_t>(lo),
                         ranked.begin() + static_cast<std::ptrdiff_t>(hi));
  for (Seen& s : tied) {
    auto it = by_hash.find(s.user_h);
    if (it == by_hash.end()) return Status::Internal("users: a user's events are missing");
    s.created = it->second.first;
    s.key = it->second.second;
  }
  std::sort(tied.begin(), tied.end(), [](const Seen& a, const Seen& b) {
    return a.last_seen != b.last_seen ? a.last_seen > b.last_seen : a.created > b.created;
  });
  std::vector<std::string> keys;
  for (size_t i = first - lo; i < end - lo; ++i) keys.push_back(tied[i].key);
  auto summaries = Summaries(app, keys, nullptr);
  if (!summaries.ok()) return summaries.status();
  out.users = std::move(*summaries);
  return out;
}

Result<bool> ClickHouseReader::UserExists(std::string_view app, std::string_view user_key) {
  auto rows =
      Query("SELECT count() FROM " + Live(app,
                                          "user_h = " + std::to_string(UserHash(app, user_key)) +
                                              " AND user_key = " + SqlQuote(user_key),
                                          "", "user_events"));
  if (!rows.ok()) return rows.status();
  return !rows->empty() && Int((*rows)[0][0]) > 0;
}

Result<std::vector<uint64_t>> ClickHouseReader::UserSessions(std::string_view app,
                                                             std::string_view user_key) {
  auto rows = Query("SELECT DISTINCT sess_h FROM " +
                    Live(app,
                         "user_h = " + std::to_string(UserHash(app, user_key)) +
                             " AND user_key = " + SqlQuote(user_key),
                         "sess_h", "user_events"));
  if (!rows.ok()) return rows.status();
  std::vector<uint64_t> out;
  for (const auto& r : *rows) out.push_back(UInt(r[0]));
  return out;
}

Result<UserDetails> ClickHouseReader::User(std::string_view app, std::string_view user_key) {
  auto exists = UserExists(app, user_key);
  if (!exists.ok()) return exists.status();
  if (!*exists) return Status::NotFound("unknown user " + std::string(user_key));
  std::vector<std::vector<SessionSummary>> sessions(1);
  auto summaries = Summaries(app, {std::string(user_key)}, &sessions);
  if (!summaries.ok()) return summaries.status();
  UserDetails out;
  out.user = std::move((*summaries)[0]);
  out.sessions = std::move(sessions[0]);
  return out;
}

Status ClickHouseReader::ForEachEvent(std::string_view app, const std::string& where,
                                      const std::function<void(const Event&, uint64_t)>& sink) {
  // Pages continue after the last (time, order) seen.
  std::string cond = where;
  for (;;) {
    auto rows = Query(std::string("SELECT ord, app, ") + kEventSelectColumns + " FROM " +
                      Live(app, cond, kEventSelectColumns) + " ORDER BY time, ord LIMIT " +
                      std::to_string(kPageRows));
    if (!rows.ok()) return rows.status();
    uint64_t ord = 0;
    int64_t time = 0;
    for (const auto& r : *rows) {
      auto e = DecodeEventRow(r, &ord);
      if (!e.ok()) return e.status();
      time = e->time_ms;
      sink(*e, ord);
    }
    if (rows->size() < static_cast<size_t>(kPageRows)) return Status::Ok();
    cond = (where.empty() ? "" : "(" + where + ") AND ") + "(time > " + std::to_string(time) +
           " OR (time = " + std::to_string(time) + " AND ord > " + std::to_string(ord) + "))";
  }
}

Result<std::vector<EventView>> ClickHouseReader::SessionEvents(std::string_view app,
                                                               std::string_view user_key,
                                                               std::string_view session_id,
                                                               std::string_view device_id) {
  auto exists = UserExists(app, user_key);
  if (!exists.ok()) return exists.status();
  if (!*exists) return Status::NotFound("unknown user " + std::string(user_key));
  std::string which = "user_key = " + SqlQuote(user_key) + " AND session = " + SqlQuote(session_id);
  if (!device_id.empty()) which += " AND device = " + SqlQuote(device_id);
  auto selected = Query("SELECT DISTINCT sess_h, device FROM " +
                        Live(app, which, "sess_h, device, user_key, session"));
  if (!selected.ok()) return selected.status();
  if (selected->empty()) return Status::NotFound("unknown session " + std::string(session_id));
  std::vector<uint64_t> hashes;
  std::vector<std::string> devices;
  for (const auto& r : *selected) {
    hashes.push_back(UInt(r[0]));
    devices.push_back(r[1]);
  }
  auto sessions = LoadSessions(app, "device IN " + QuoteList(devices));
  if (!sessions.ok()) return sessions.status();
  const SessionIndex index(*sessions);
  // Oldest first, equal times in storage order: as ForEachEvent reads them.
  std::vector<EventView> views;
  Status st =
      ForEachEvent(app, "device IN " + QuoteList(devices) + " AND sess_h IN " + NumberList(hashes),
                   [&](const Event& e, uint64_t) {
                     EventView v;
                     v.event = e;
                     index.Complete(&v);
                     views.push_back(std::move(v));
                   });
  if (!st.ok()) return st;
  return views;
}

Result<std::vector<EventView>> ClickHouseReader::DeviceContexts(
    std::string_view app, std::span<const std::string> device_ids) {
  std::vector<EventView> out(device_ids.size());
  if (device_ids.empty()) return out;
  auto sessions =
      LoadSessions(app, "device IN " + QuoteList({device_ids.begin(), device_ids.end()}));
  if (!sessions.ok()) return sessions.status();
  std::map<std::string, const SessionRow*> latest;
  for (const SessionRow& s : *sessions) {
    auto& l = latest[s.device];
    if (!l || s.LaterThan(*l)) l = &s;
  }
  for (size_t i = 0; i < device_ids.size(); ++i) {
    auto it = latest.find(device_ids[i]);
    if (it != latest.end() && it->second->inits > 0) out[i].event = it->second->init_context;
  }
  return out;
}

Result<std::vector<EventView>> ClickHouseReader::WithSessionContexts(
    std::span<const Event> events) {
  std::vector<EventView> out(events.size());
  std::map<std::string, std::set<std::string>> devices;  // app -> devices
  for (size_t i = 0; i < events.size(); ++i) {
    out[i].event = events[i];
    devices[events[i].app_id].insert(events[i].device_id);
  }
  for (const auto& [app, ids] : devices) {
    auto sessions = LoadSessions(app, "device IN " + QuoteList({ids.begin(), ids.end()}));
    if (!sessions.ok()) return sessions.status();
    const SessionIndex index(*sessions);
    for (EventView& v : out) {
      if (v.event.app_id == app) index.Complete(&v);
    }
  }
  return out;
}

Result<StoreStats> ClickHouseReader::Stats(std::string_view app) {
  auto rows = Query(
      "SELECT uniqExact(app), count(), uniqExact(app, sess_h), uniqExact(app, device),"
      " uniqExact(app, user_key) FROM " +
      Live(app, "", "sess_h, device, user_key"));
  if (!rows.ok()) return rows.status();
  StoreStats s;
  if (!rows->empty()) {
    const auto& r = (*rows)[0];
    s.apps = Int(r[0]);
    s.events = Int(r[1]);
    s.sessions = Int(r[2]);
    s.devices = Int(r[3]);
    s.users = Int(r[4]);
  }
  return s;
}

Result<std::vector<Event>> ClickHouseReader::Recent(std::string_view app, int64_t from_ms,
                                                    int64_t to_ms, size_t limit) {
  auto rows = Query(std::string("SELECT ord, app, ") + kEventSelectColumns + " FROM " +
                    Live(app, Range(from_ms, to_ms), kEventSelectColumns) +
                    " ORDER BY time DESC, ord LIMIT " + std::to_string(limit));
  if (!rows.ok()) return rows.status();
  std::vector<Event> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    uint64_t ord = 0;
    auto e = DecodeEventRow(r, &ord);
    if (!e.ok()) return e.status();
    out.push_back(std::move(*e));
  }
  return out;
}

Status ClickHouseReader::StoredBefore(uint64_t before_ord, int64_t from_ms, int64_t to_ms,
                                      size_t per_app,
                                      const std::function<void(const Event&)>& sink) {
  auto rows = Query(std::string("SELECT ord, app, ") + kEventSelectColumns + " FROM " +
                    Live("", Range(from_ms, to_ms) + " AND ord < " + std::to_string(before_ord),
                         kEventSelectColumns) +
                    " ORDER BY ord DESC LIMIT " + std::to_string(per_app) + " BY app");
  if (!rows.ok()) return rows.status();
  for (auto r = rows->rbegin(); r != rows->rend(); ++r) {
    uint64_t ord = 0;
    auto e = DecodeEventRow(*r, &ord);
    if (!e.ok()) return e.status();
    sink(*e);
  }
  return Status::Ok();
}

}  // namespace nucleon
