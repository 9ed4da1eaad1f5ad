#include "store/clickhouse/clickhouse_shared_live.h"

#include <unordered_map>

#include "core/crypto.h"
#include "core/log.h"
#include "store/clickhouse/event_rows.h"

namespace nucleon {

namespace {

// How far back a node's rows are read: a device live now was active within
// the 2-minute presence window, so its latest row is at most that old (plus
// clock differences between nodes).
constexpr int64_t kPresenceReadMs = 3 * 60 * 1000;
constexpr int64_t kPresenceMs = 2 * 60 * 1000;
// Days of passing state kept before they are dropped (whole partitions).
constexpr int kKeptDays = 2;
constexpr int64_t kCleanupEveryMs = 60 * 60 * 1000;

uint64_t RandomId() {
  const std::string raw = RandomBytes(8);
  uint64_t id = 0;
  for (unsigned char c : raw) id = (id << 8) | c;
  return id;
}

}  // namespace

ClickHouseSharedLive::ClickHouseSharedLive(ClickHouseClient* client, ClickHouseReader* reader,
                                           const ClickHouseStoreOptions& options,
                                           std::function<Status(bool)> ready,
                                           std::function<void(std::string)> run_later)
    : client_(client),
      reader_(reader),
      options_(options),
      tables_(options),
      ready_(std::move(ready)),
      run_later_(std::move(run_later)),
      incarnation_(RandomId()) {}

Status ClickHouseSharedLive::Publish(std::span<const PresenceRecord> changes, int64_t now_ms) {
  const std::string now = std::to_string(now_ms);
  if (!changes.empty()) {
    std::string rows;
    for (const PresenceRecord& r : changes) {
      AppendTsv(&rows, r.app_id);
      rows += "\t" + std::to_string(incarnation_) + "\t" + std::to_string(++seq_) + "\t";
      AppendTsv(&rows, r.device_id);
      rows.push_back('\t');
      AppendTsv(&rows, r.user_key);
      rows += "\t" + std::to_string(UserHash(r.app_id, r.user_key)) + "\t";
      AppendTsv(&rows, r.platform);
      rows.push_back('\t');
      AppendTsv(&rows, r.os_version);
      rows.push_back('\t');
      AppendTsv(&rows, r.country);
      rows +=
          "\t" + std::to_string(r.last_seen_ms) + "\t" + (r.open ? "1" : "0") + "\t" + now + "\n";
    }
    auto st = client_->Execute("INSERT INTO " + tables_("presence") + " FORMAT TabSeparated", rows,
                               InsertSettings(options_));
    if (!st.ok()) return st.status();
  }
  auto st =
      client_->Execute("INSERT INTO " + tables_("nodes") + " FORMAT TabSeparated",
                       std::to_string(incarnation_) + "\t" + now + "\n", InsertSettings(options_));
  if (!st.ok()) return st.status();
  if (now_ms >= next_cleanup_ms_) {
    next_cleanup_ms_ = now_ms + kCleanupEveryMs;
    if (Status dropped = DropOldDays(now_ms); !dropped.ok()) {
      LogWarn("old live presence days stay for now: " + dropped.ToString());
    }
  }
  return Status::Ok();
}

Status ClickHouseSharedLive::DropOldDays(int64_t now_ms) {
  // The days this server holds; on a cluster each drop runs on every server
  // (one that lacks the day has nothing to drop).
  const bool cluster = !tables_.cluster().empty();
  const std::string suffix = cluster ? "_local" : "";
  const std::string on_cluster = cluster ? " ON CLUSTER " + SqlIdentifier(tables_.cluster()) : "";
  const int64_t oldest_kept_s = now_ms / 1000 - int64_t{kKeptDays} * 86400;
  auto days = client_->Execute(
      "SELECT DISTINCT table, partition FROM system.parts WHERE active AND database = " +
      SqlQuote(tables_.database()) + " AND table IN (" + SqlQuote("presence" + suffix) + ", " +
      SqlQuote("nodes" + suffix) + ") AND toUInt32(partition) < toYYYYMMDD(toDateTime(" +
      std::to_string(oldest_kept_s) + "), 'UTC') FORMAT TabSeparated");
  if (!days.ok()) return days.status();
  auto rows = ParseTsv(*days);
  if (!rows.ok()) return rows.status();
  for (const auto& r : *rows) {
    if (r.size() != 2 || r[1].empty() ||
        r[1].find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    run_later_("ALTER TABLE " + tables_(r[0]) + on_cluster + " DROP PARTITION " + r[1]);
  }
  return Status::Ok();
}

Result<std::vector<PresenceRecord>> ClickHouseSharedLive::Present(std::string_view app_id,
                                                                  std::vector<PresenceRecord> local,
                                                                  int64_t now_ms) {
  // Presence does not travel through the spool: nothing to wait for.
  NUCLEON_RETURN_IF_ERROR(ready_(false));
  const std::string app = SqlQuote(app_id);
  // Each other live node's latest row per device, where it still holds the
  // device and saw it within the presence window.
  auto others = reader_->Query(
      "SELECT device, u, pf, ov, co, ls FROM (SELECT node, device,"
      " argMax(user_key, seq) AS u, argMax(platform, seq) AS pf, argMax(os_version, seq) AS ov,"
      " argMax(country, seq) AS co, argMax(last_seen, seq) AS ls, argMax(open, seq) AS op"
      " FROM " +
      tables_("presence") + " WHERE app = " + app +
      " AND published >= " + std::to_string(now_ms - kPresenceReadMs) +
      " AND node != " + std::to_string(incarnation_) + " AND node IN (SELECT node FROM " +
      tables_("nodes") + " WHERE alive >= " + std::to_string(now_ms - kNodeAliveMs) +
      ") GROUP BY node, device) WHERE op = 1 AND ls >= " + std::to_string(now_ms - kPresenceMs));
  if (!others.ok()) return others.status();
  // Users deleted within the window: their devices show again only with
  // activity after the delete.
  auto deleted =
      reader_->Query("SELECT user_h, intDiv(max(ord), 4194304) FROM " + tables_("deletions") +
                     " WHERE app = " + app + " GROUP BY user_h HAVING max(ord) >= " +
                     std::to_string(OrderClock::First(now_ms - kPresenceReadMs)));
  if (!deleted.ok()) return deleted.status();

  std::unordered_map<std::string, PresenceRecord> by_device;
  for (PresenceRecord& r : local) {
    std::string id = r.device_id;
    by_device.emplace(std::move(id), std::move(r));
  }
  for (auto& row : *others) {
    if (row.size() != 6) return Status::Internal("unexpected presence row from ClickHouse");
    PresenceRecord r;
    r.app_id = std::string(app_id);
    r.device_id = std::move(row[0]);
    r.user_key = std::move(row[1]);
    r.platform = std::move(row[2]);
    r.os_version = std::move(row[3]);
    r.country = std::move(row[4]);
    r.last_seen_ms = std::strtoll(row[5].c_str(), nullptr, 10);
    auto [it, fresh] = by_device.try_emplace(r.device_id);
    if (fresh || r.last_seen_ms > it->second.last_seen_ms) it->second = std::move(r);
  }
  std::unordered_map<uint64_t, int64_t> deleted_at;
  for (const auto& row : *deleted) {
    if (row.size() != 2) return Status::Internal("unexpected deletion row from ClickHouse");
    deleted_at[std::strtoull(row[0].c_str(), nullptr, 10)] =
        std::strtoll(row[1].c_str(), nullptr, 10);
  }
  std::vector<PresenceRecord> out;
  out.reserve(by_device.size());
  for (auto& [id, r] : by_device) {
    if (!deleted_at.empty()) {
      auto d = deleted_at.find(UserHash(app_id, r.user_key));
      if (d != deleted_at.end() && d->second >= r.last_seen_ms) continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<Event>> ClickHouseSharedLive::Recent(std::string_view app_id, int64_t from_ms,
                                                        int64_t to_ms, size_t limit) {
  NUCLEON_RETURN_IF_ERROR(ready_(true));
  return reader_->Recent(app_id, from_ms, to_ms, limit);
}

std::string ClickHouseSharedLive::DeleteUserStatement(std::string_view app_id, uint64_t user_h,
                                                      int64_t deleted_ms) const {
  const bool cluster = !tables_.cluster().empty();
  return "ALTER TABLE " + tables_(cluster ? "presence_local" : "presence") +
         (cluster ? " ON CLUSTER " + SqlIdentifier(tables_.cluster()) : "") +
         " DELETE WHERE app = " + SqlQuote(app_id) + " AND user_h = " + std::to_string(user_h) +
         " AND last_seen <= " + std::to_string(deleted_ms);
}

}  // namespace nucleon
