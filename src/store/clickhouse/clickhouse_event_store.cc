#include "store/clickhouse/clickhouse_event_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/crypto.h"
#include "core/log.h"
#include "core/time_util.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_reader.h"
#include "store/clickhouse/clickhouse_shared_live.h"
#include "store/clickhouse/event_rows.h"
#include "store/clickhouse/spool.h"
#include "store/event_identity.h"

namespace nucleon {

namespace {

// Spool bytes forwarded per round: large INSERTs are what ClickHouse likes.
constexpr size_t kForwardBytes = 8u << 20;
// How long a read waits for this node's acked events to reach ClickHouse
// before it answers from what is there.
constexpr int kReadWaitMs = 2000;
// Below this spool backlog the writer asks ClickHouse which identities it
// holds before an ack (so `inserted` is exact for resends); above it, not.
constexpr uint64_t kQuietBacklogBytes = 1u << 20;
// How long a graceful stop waits for the same.
constexpr int kStopWaitMs = 10000;
// How long a delete waits for the same before it gives up (Unavailable).
constexpr int kDeleteWaitMs = 30000;
// Identities asked about in one statement (statements stay well under the
// size ClickHouse parses).
constexpr size_t kIdentsPerStatement = 4000;
// Identities of recently spooled events remembered on the node (two
// generations of this many), so the live window does not show a resend
// twice; ClickHouse's idents table is what decides.
constexpr size_t kRecentIdents = 250000;

// The spool's rows: "E\t" + an events row, or a heartbeat
// "H\tapp\tdevice\tsession\tnode\tord\treceived\n".
enum EventField : size_t {
  kApp = 0,
  kNode,
  kOrd,
  kTime,
  kType,
  kName,
  kDevice,
  kSession,
  kSessH,
  kUserKey,
  kUserH,
  kUserId,
  kAnonId,
  kClientId,
  kClientDate,
  kIdent,
  kEventFields = 34
};

uint64_t ParseU64(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 10); }
int64_t ParseI64(const std::string& s) { return std::strtoll(s.c_str(), nullptr, 10); }

uint64_t LoadNodeId(const std::string& data_dir) {
  const std::string path = data_dir + "/node-id";
  {
    std::ifstream in(path);
    std::string hex;
    if (in >> hex && hex.size() == 16) return std::strtoull(hex.c_str(), nullptr, 16);
  }
  std::string raw = RandomBytes(8);
  const std::string hex = HexEncode(reinterpret_cast<const uint8_t*>(raw.data()), raw.size());
  std::ofstream(path, std::ios::trunc) << hex << "\n";
  return std::strtoull(hex.c_str(), nullptr, 16);
}

std::string JoinTsv(const std::vector<std::string>& fields, size_t from, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i) out.push_back('\t');
    AppendTsv(&out, fields[from + i]);
  }
  out.push_back('\n');
  return out;
}

std::string QuoteList(const std::set<std::string>& values) {
  std::string out = "(";
  for (const std::string& v : values) {
    if (out.size() > 1) out += ", ";
    out += SqlQuote(v);
  }
  return out + ")";
}

class ClickHouseEventStore final : public EventStore {
 public:
  ~ClickHouseEventStore() override {
    // A graceful stop hands what is spooled to ClickHouse first (when it
    // answers, for a bounded time); the rest waits for the next start.
    if (forwarder_.joinable()) WaitForwarded(kStopWaitMs);
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (forwarder_.joinable()) forwarder_.join();
    if (mutator_.joinable()) mutator_.join();
    if (spool_lock_ >= 0) ::close(spool_lock_);
  }

  Status Open(const std::string& data_dir, const ClickHouseStoreOptions& options) {
    options_ = options;
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    if (ec) return Status::Internal("cannot create " + data_dir + ": " + ec.message());
    ClickHouseClientOptions client_options = ClientOptionsFor(options);
    if (client_options.urls.empty()) {
      return Status::InvalidArgument("the ClickHouse store needs --clickhouse URL[,URL...]");
    }
    auto client = ClickHouseClient::Create(client_options);
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
    // The writer asks ClickHouse which identities it knows with a short
    // timeout: an ack never waits long for it.
    client_options.connect_timeout_ms = 300;
    client_options.request_timeout_ms = 1000;
    client_options.max_idle_connections = 2;
    auto append_client = ClickHouseClient::Create(client_options);
    if (!append_client.ok()) return append_client.status();
    append_client_ = std::move(*append_client);
    reader_ = std::make_unique<ClickHouseReader>(client_.get(), ClickHouseTables(options));
    shared_live_ = std::make_unique<ClickHouseSharedLive>(
        client_.get(), reader_.get(), options,
        [this](bool wait) { return Clean(wait ? ReadyToRead() : SchemaReady()); },
        [this](std::string statement) { RunLater(std::move(statement)); });
    open_ord_ = OrderClock::First(NowMs());
    if (options.read_only) {
      // Beside a running node: its spool is the node's alone.
      NUCLEON_RETURN_IF_ERROR(Clean(EnsureClickHouseSchema(*client_, ClickHouseTables(options))));
      schema_ready_.store(true);
      return Status::Ok();
    }
    node_ = LoadNodeId(data_dir);
    clock_ = OrderClock(node_);
    // One process per spool: a second forwarder would send its rows twice.
    spool_lock_ = ::open((data_dir + "/spool.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (spool_lock_ < 0 || ::flock(spool_lock_, LOCK_EX | LOCK_NB) != 0) {
      return Status::Unavailable("the spool in " + data_dir +
                                 " is in use by another nucleon process (a running server?)");
    }
    NUCLEON_RETURN_IF_ERROR(spool_.Open(data_dir + "/spool", options.fsync_full));
    spool_dir_ = data_dir + "/spool";
    forwarder_ = std::thread([this] { ForwardLoop(); });
    mutator_ = std::thread([this] { MutationLoop(); });
    return Status::Ok();
  }

  Status Append(std::span<const Event> events, std::vector<uint8_t>* inserted) override {
    std::function<void()> publish;
    NUCLEON_RETURN_IF_ERROR(AppendDeferred(events, inserted, &publish));
    return Sync();
  }

  Status AppendDeferred(std::span<const Event> events, std::vector<uint8_t>* inserted,
                        std::function<void()>* publish) override {
    *publish = nullptr;
    inserted->assign(events.size(), 0);
    if (options_.read_only) return ReadOnly();
    std::string rows;
    std::unordered_set<uint64_t> idents;  // of this batch
    // Resends of events stored earlier (by any node, or before a restart)
    // are told apart here when ClickHouse answers quickly, so that
    // `inserted` is exact; the forwarder checks again in any case.
    std::vector<std::string> identities(events.size());
    Identities asked;
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].type == EventType::kHeartbeat) continue;
      identities[i] = IdentityHash(events[i]);
      if (!identities[i].empty()) {
        asked[events[i].app_id][identities[i]] = {events[i].device_id,
                                                  EventTombstoneHashes(events[i])};
      }
    }
    std::set<std::pair<std::string, std::string>> known;
    // Only while the forwarder keeps up: under load it decides alone, and
    // the ack does not wait for ClickHouse.
    const uint64_t appended = spool_.appended(), forwarded = spool_.forwarded();
    if (!asked.empty() && schema_ready_.load() && healthy_.load() &&
        appended - std::min(appended, forwarded) < kQuietBacklogBytes) {
      auto found = KnownIdentities(*append_client_, asked);
      if (found.ok()) known = std::move(*found);
    }
    const int64_t now = NowMs();
    for (size_t i = 0; i < events.size(); ++i) {
      const Event& e = events[i];
      const uint64_t ord = clock_.Next(now);
      if (e.type == EventType::kHeartbeat) {
        rows += "H\t";
        AppendTsv(&rows, e.app_id);
        rows.push_back('\t');
        AppendTsv(&rows, e.device_id);
        rows.push_back('\t');
        AppendTsv(&rows, e.session_id);
        rows += "\t" + std::to_string(node_) + "\t" + std::to_string(ord) + "\t" +
                std::to_string(e.time_ms) + "\n";
        continue;
      }
      const std::string& ident = identities[i];
      if (!ident.empty()) {
        const uint64_t key = std::strtoull(ident.substr(0, 16).c_str(), nullptr, 16);
        if (SeenRecently(key) || known.count({e.app_id, ident}) || !idents.insert(key).second) {
          continue;
        }
      }
      rows += "E\t";
      AppendEventRow(e, node_, ord, &rows);
      (*inserted)[i] = 1;
    }
    if (rows.empty()) return Status::Ok();
    auto seq = spool_.Append(rows);
    if (!seq.ok()) {
      inserted->assign(events.size(), 0);
      return seq.status();
    }
    for (uint64_t key : idents) Remember(key);
    cv_.notify_all();
    return Status::Ok();
  }

  Status Sync() override { return spool_.Sync(); }

  Status Probe() override {
    if (options_.read_only) return ReadOnly();
    const std::string path = spool_dir_ + "/probe";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Status::Unavailable("the spool folder is not writable");
    const bool ok = ::write(fd, "ok\n", 3) == 3 && ::fdatasync(fd) == 0;
    ::close(fd);
    return ok ? Status::Ok() : Status::Unavailable("the spool folder is not writable");
  }

  bool Ready() const override { return schema_ready_.load(); }

  std::vector<StoreMetric> Metrics() const override {
    const uint64_t appended = spool_.appended(), forwarded = spool_.forwarded();
    return {
        {"nucleon_clickhouse_reachable", "1 when the last statement sent to ClickHouse succeeded",
         false, healthy_.load() ? 1.0 : 0.0},
        {"nucleon_spool_backlog_bytes", "Spooled bytes not yet forwarded to ClickHouse", false,
         static_cast<double>(appended > forwarded ? appended - forwarded : 0)},
        {"nucleon_spool_forward_failures_total", "Forwarding rounds that failed and were retried",
         true, static_cast<double>(forward_failures_.load())},
        {"nucleon_spool_forwarded_events_total", "Events forwarded to ClickHouse", true,
         static_cast<double>(forwarded_events_.load())},
        {"nucleon_retention_changes_total", "Changes of the retention in force.", true,
         static_cast<double>(retention_loads_.load())},
        {"nucleon_retention_mutations_total",
         "Mutations queued to remove the rows older than their app's retention.", true,
         static_cast<double>(retention_mutations_.load())},
    };
  }

  SharedLive* shared_live() override { return shared_live_.get(); }

  // Retention: reads leave the expired rows out at once (ClickHouseReader);
  // the rows themselves go by mutation, on a change and at each new UTC day.
  void SetRetention(const RetentionPolicy& policy) override {
    {
      std::lock_guard lock(retention_mu_);
      if (policy == retention_) return;
      retention_ = policy;
      retention_due_ = true;
    }
    reader_->SetRetention(policy);
    retention_loads_.fetch_add(1);
  }

  bool MaintenanceDue(bool closing) override {
    if (closing || options_.read_only) return false;
    std::lock_guard lock(retention_mu_);
    if (retention_.empty()) return false;
    return retention_due_ || FloorDiv(NowMs(), kDayMs) != retention_day_;
  }

  Status Maintain() override {
    const int64_t now = NowMs();
    {
      std::lock_guard lock(retention_mu_);
      retention_due_ = false;
      retention_day_ = FloorDiv(now, kDayMs);
    }
    const ClickHouseTables tables(options_);
    const std::string on_cluster =
        tables.cluster().empty() ? "" : " ON CLUSTER " + SqlIdentifier(tables.cluster());
    const std::string suffix = tables.cluster().empty() ? "" : "_local";
    // A heartbeat older than the cut can only extend a session that is gone:
    // a session that keeps an event ends after it anyway.
    for (const auto& [table, column] : {std::pair<const char*, const char*>{"events", "time"},
                                        std::pair<const char*, const char*>{"heartbeats", "r"}}) {
      const std::string keep = reader_->RetentionKeep("", column, now);
      if (keep.empty()) return Status::Ok();
      RunLater("ALTER TABLE " + tables(table + suffix) + on_cluster + " DELETE WHERE NOT (" + keep +
               ")");
      retention_mutations_.fetch_add(1);
    }
    return Status::Ok();
  }

  Status Export(std::string_view app_id, const std::function<void(const Event&)>& sink) override {
    WaitForwarded(kReadWaitMs);
    return reader_->ForEachEvent(app_id, "", [&sink](const Event& e, uint64_t) { sink(e); });
  }

  Status StoredBeforeOpen(int64_t from_ms, int64_t to_ms, size_t per_app,
                          const std::function<void(const Event&)>& sink) override {
    WaitForwarded(kReadWaitMs);
    return reader_->StoredBefore(open_ord_, from_ms, to_ms, per_app, sink);
  }

  Result<StoreStats> Stats(std::string_view app_id) override {
    WaitForwarded(kReadWaitMs);
    return Answer(reader_->Stats(app_id));
  }

  Result<QuickGlanceCounts> QuickGlance(std::string_view app_id, int64_t from_ms,
                                        int64_t to_ms) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->QuickGlance(app_id, from_ms, to_ms));
  }
  Result<DailyAnalytics> Daily(std::string_view app_id, const QueryRange& range) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->Daily(app_id, range));
  }
  Result<DailyCounts> EventCounts(std::string_view app_id, const QueryRange& range,
                                  bool errors) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->EventCounts(app_id, range, errors));
  }
  Result<std::vector<ErrorGroup>> ErrorGroups(std::string_view app_id,
                                              const QueryRange& range) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->ErrorGroups(app_id, range));
  }
  Result<std::vector<EventPropKeys>> EventProps(std::string_view app_id,
                                                const QueryRange& range) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->EventProps(app_id, range));
  }
  Result<std::vector<ValueCount>> EventAttribute(std::string_view app_id, const QueryRange& range,
                                                 std::string_view event,
                                                 std::string_view attr) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->EventAttribute(app_id, range, event, attr));
  }
  Result<UserList> Users(std::string_view app_id, int64_t page, int64_t limit,
                         std::string_view search) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->Users(app_id, page, limit, search));
  }
  Result<UserDetails> User(std::string_view app_id, std::string_view user_key) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->User(app_id, user_key));
  }
  Result<std::vector<EventView>> SessionEvents(std::string_view app_id, std::string_view user_key,
                                               std::string_view session_id,
                                               std::string_view device_id) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->SessionEvents(app_id, user_key, session_id, device_id));
  }
  Result<std::vector<EventView>> DeviceContexts(std::string_view app_id,
                                                std::span<const std::string> device_ids) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->DeviceContexts(app_id, device_ids));
  }
  Result<std::vector<EventView>> WithSessionContexts(std::span<const Event> events) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->WithSessionContexts(events));
  }

  Status DeleteUser(std::string_view app_id, std::string_view user_key) override {
    return Clean(Delete(app_id, user_key));
  }

 private:
  static Status ReadOnly() {
    return Status::InvalidArgument("this ClickHouse store was opened for reading only");
  }

  Status Delete(std::string_view app_id, std::string_view user_key) {
    if (options_.read_only) return ReadOnly();
    if (!WaitForwarded(kDeleteWaitMs)) {
      return Status::Unavailable("ClickHouse has not taken this node's events yet; try again");
    }
    auto exists = reader_->UserExists(app_id, user_key);
    if (!exists.ok()) return exists.status();
    if (!*exists) return Status::NotFound("unknown user " + std::string(user_key));
    auto sessions = reader_->UserSessions(app_id, user_key);
    if (!sessions.ok()) return sessions.status();
    // Everything of the user stored before this order is gone, on every node
    // and in every answer, from the moment the deletion row is in.
    const uint64_t ord = clock_.Next(NowMs());
    const ClickHouseTables tables(options_);
    const std::string app = std::string(app_id);
    std::string resets;
    for (uint64_t h : *sessions) {
      AppendTsv(&resets, app);
      resets += "\t" + std::to_string(h) + "\t" + std::to_string(ord) + "\n";
    }
    if (!resets.empty()) {
      auto st = client_->Execute("INSERT INTO " + tables("session_resets") + " FORMAT TabSeparated",
                                 resets, InsertSettings(options_));
      if (!st.ok()) return st.status();
    }
    std::string deletion;
    AppendTsv(&deletion, app);
    const uint64_t user_h = UserHash(app_id, user_key);
    deletion += "\t" + std::to_string(user_h) + "\t" + std::to_string(ord) + "\n";
    auto st = client_->Execute("INSERT INTO " + tables("deletions") + " FORMAT TabSeparated",
                               deletion, InsertSettings(options_));
    if (!st.ok()) return st.status();
    // The rows themselves go in the background (mutations, on their own
    // thread: on a cluster they wait for every server); until then the
    // deletion row hides them. The identities stay in `idents`: late resends
    // of the removed events are recognised there and dropped.
    const std::string on_cluster =
        tables.cluster().empty() ? "" : " ON CLUSTER " + SqlIdentifier(tables.cluster());
    const std::string suffix = tables.cluster().empty() ? "" : "_local";
    std::vector<std::string> mutations = {"ALTER TABLE " + tables("events" + suffix) + on_cluster +
                                          " DELETE WHERE app = " + SqlQuote(app) +
                                          " AND user_h = " + std::to_string(user_h) +
                                          " AND ord < " + std::to_string(ord)};
    mutations.push_back(shared_live_->DeleteUserStatement(app_id, user_h, OrderClock::TimeOf(ord)));
    if (!sessions->empty()) {
      std::string list;
      for (uint64_t h : *sessions) list += (list.empty() ? "" : ", ") + std::to_string(h);
      mutations.push_back("ALTER TABLE " + tables("heartbeats" + suffix) + on_cluster +
                          " DELETE WHERE app = " + SqlQuote(app) + " AND sess_h IN (" + list +
                          ") AND ord < " + std::to_string(ord));
    }
    for (std::string& m : mutations) RunLater(std::move(m));
    // The spool's copy of the user's events goes with its segment.
    return spool_.Rotate();
  }

  bool SeenRecently(uint64_t key) const {
    return recent_[0].count(key) > 0 || recent_[1].count(key) > 0;
  }
  void Remember(uint64_t key) {
    if (recent_[0].size() >= kRecentIdents) {
      recent_[1].swap(recent_[0]);
      recent_[0].clear();
    }
    recent_[0].insert(key);
  }

  // app -> identity -> its device and its tombstone hashes (the forms a
  // migrated deletion has).
  struct Asked {
    std::string device;
    std::array<int64_t, 2> tombstones{};
  };
  using Identities = std::map<std::string, std::map<std::string, Asked>>;

  // Which of these identities ClickHouse knows: stored before (in `events`,
  // found through the device, or in `idents`: an event's row goes in before
  // its identity's, and after a delete only the identity stays), or deleted
  // in an embedded store this deployment was migrated from (`tombstones`).
  Result<std::set<std::pair<std::string, std::string>>> KnownIdentities(ClickHouseClient& client,
                                                                        const Identities& asked) {
    size_t total = 0;
    for (const auto& [app, list] : asked) total += list.size();
    if (total > kIdentsPerStatement) {
      std::set<std::pair<std::string, std::string>> known;
      Status st = ForEachPart(asked, [&](const Identities& part) -> Status {
        auto found = KnownIdentities(client, part);
        if (!found.ok()) return found.status();
        known.insert(found->begin(), found->end());
        return Status::Ok();
      });
      if (!st.ok()) return st;
      return known;
    }
    const ClickHouseTables tables(options_);
    std::string by_ident, by_device, by_tombstone;
    std::map<std::pair<std::string, std::string>, std::string> of_tombstone;
    for (const auto& [app, list] : asked) {
      std::string idents, hashes;
      std::set<std::string> devices;
      for (const auto& [ident, a] : list) {
        idents += (idents.empty() ? "" : ", ") + SqlQuote(ident);
        devices.insert(a.device);
        for (int64_t tombstone : a.tombstones) {
          hashes += (hashes.empty() ? "" : ", ") + std::to_string(tombstone);
          of_tombstone[{app, std::to_string(tombstone)}] = ident;
        }
      }
      const std::string app_is = std::string("(app = ") + SqlQuote(app);
      by_ident += (by_ident.empty() ? "" : " OR ") + app_is + " AND ident IN (" + idents + "))";
      by_device += (by_device.empty() ? "" : " OR ") + app_is + " AND device IN " +
                   QuoteList(devices) + " AND ident IN (" + idents + "))";
      by_tombstone +=
          (by_tombstone.empty() ? "" : " OR ") + app_is + " AND hash IN (" + hashes + "))";
    }
    auto body =
        client.Execute("SELECT app, ident, 0 FROM " + tables("idents") + " WHERE " + by_ident +
                       " UNION ALL SELECT app, ident, 0 FROM " + tables("events") + " WHERE " +
                       by_device + " UNION ALL SELECT app, toString(hash), 1 FROM " +
                       tables("tombstones") + " WHERE " + by_tombstone + " FORMAT TabSeparated");
    if (!body.ok()) return body.status();
    auto rows = ParseTsv(*body);
    if (!rows.ok()) return rows.status();
    std::set<std::pair<std::string, std::string>> known;
    for (const auto& r : *rows) {
      if (r[2] == "0") {
        known.emplace(r[0], r[1]);
      } else if (auto it = of_tombstone.find({r[0], r[1]}); it != of_tombstone.end()) {
        known.emplace(r[0], it->second);
      }
    }
    return known;
  }

  // What an API answer may say of a failed statement: ClickHouse's own text
  // (statements, addresses) goes to the log only.
  Status Clean(Status st) const {
    if (st.ok() || st.code() != StatusCode::kInternal) return st;
    LogWarn("ClickHouse: " + st.message());
    return Status::Internal("ClickHouse could not answer; the server log says why");
  }
  template <typename T>
  Result<T> Answer(Result<T> r) const {
    if (r.ok()) return r;
    return Clean(r.status());
  }

  Status SchemaReady() const {
    return schema_ready_.load() ? Status::Ok()
                                : Status::Unavailable("ClickHouse is not reachable yet");
  }
  Status ReadyToRead() {
    NUCLEON_RETURN_IF_ERROR(SchemaReady());
    WaitForwarded(kReadWaitMs);
    return Status::Ok();
  }

  // Waits until every event spooled so far is in ClickHouse, at most
  // `timeout_ms`, and not at all while forwarding fails. True when it is.
  bool WaitForwarded(int timeout_ms) {
    const uint64_t target = spool_.appended();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
      return spool_.forwarded() >= target || stopping_ || (!healthy_.load() && failed_once_);
    });
    return spool_.forwarded() >= target;
  }

  // Queues a slow statement for the mutation thread.
  void RunLater(std::string statement) {
    {
      std::lock_guard lock(mu_);
      mutations_.push_back(std::move(statement));
    }
    cv_.notify_all();
  }

  // Runs the deletes' mutations (and other slow statements), one at a time, retrying a failed one a
  // few times (a mutation left undone only leaves hidden rows on disk; the next delete of the user
  // removes them too).
  void MutationLoop() {
    for (;;) {
      std::string statement;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !mutations_.empty(); });
        if (mutations_.empty()) return;  // stopping
        statement = std::move(mutations_.front());
        mutations_.pop_front();
      }
      for (int attempt = 1;; ++attempt) {
        auto done = client_->Execute(statement);
        if (done.ok()) break;
        if (attempt == 3) {
          // A deleted user's rows stay hidden until the user's next delete
          // removes them; an old day of presence goes with the next cleanup.
          LogWarn("a background ClickHouse statement was given up: " + done.status().ToString());
          break;
        }
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, std::chrono::seconds(2), [&] { return stopping_; })) break;
      }
    }
  }

  void ForwardLoop() {
    Spool::Position pos = spool_.Start();
    // Records after the last mark may be in ClickHouse already.
    bool uncertain = true;
    int backoff_ms = 100;
    std::string last_error;
    auto fail = [&](const Status& st) {
      healthy_.store(false);
      forward_failures_.fetch_add(1);
      uncertain = true;
      if (st.ToString() != last_error) {
        last_error = st.ToString();
        LogWarn("ClickHouse: " + last_error + " (tracking is spooled meanwhile)");
      }
      {
        std::unique_lock lock(mu_);
        failed_once_ = true;
        cv_.notify_all();
        cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; });
      }
      backoff_ms = std::min(backoff_ms * 2, 2000);
    };
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
      }
      if (!schema_ready_.load()) {
        Status st = EnsureClickHouseSchema(*client_, ClickHouseTables(options_));
        if (!st.ok()) {
          fail(st);
          continue;
        }
        schema_ready_.store(true);
      }
      std::string payload;
      uint64_t bytes = 0;
      Spool::Position next = pos;
      auto records = spool_.Read(&next, kForwardBytes, &payload, &bytes);
      if (!records.ok()) {
        fail(records.status());
        continue;
      }
      if (*records == 0) {
        std::unique_lock lock(mu_);
        cv_.notify_all();
        cv_.wait_for(lock, std::chrono::milliseconds(50),
                     [&] { return stopping_ || spool_.appended() > spool_.forwarded(); });
        continue;
      }
      Status st = ForwardBatch(payload, uncertain);
      if (!st.ok()) {
        fail(st);
        continue;
      }
      if (!healthy_.load() && !last_error.empty()) LogInfo("ClickHouse: reachable again");
      last_error.clear();
      backoff_ms = 100;
      uncertain = false;
      healthy_.store(true);
      pos = next;
      if (Status m = spool_.MarkForwarded(pos, bytes); !m.ok()) LogWarn(m.ToString());
      std::lock_guard lock(mu_);
      cv_.notify_all();
    }
  }

  struct SessionState {
    uint64_t created = UINT64_MAX;
    int64_t inits = 0;
    int64_t init_min = INT64_MAX, any_min = INT64_MAX;
    std::string device, session;
    int64_t Start() const { return inits > 0 ? init_min : any_min; }
  };

  // One round: the rows of some spool records into ClickHouse. `uncertain`:
  // some of them may be there already (checked by their order).
  Status ForwardBatch(const std::string& payload, bool uncertain) {
    auto parsed = ParseTsv(payload);
    if (!parsed.ok()) return parsed.status();
    std::vector<std::vector<std::string>>& rows = *parsed;
    const ClickHouseTables tables(options_);
    std::set<std::string> apps;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (auto& r : rows) {
      if (r.empty() || (r[0] == "E" && r.size() != kEventFields + 1) ||
          (r[0] == "H" && r.size() != 7) || (r[0] != "E" && r[0] != "H")) {
        return Status::Internal("a damaged row in the spool");
      }
      apps.insert(r[1]);
      const uint64_t ord = ParseU64(r[0] == "E" ? r[1 + kOrd] : r[5]);
      lo = std::min(lo, ord);
      hi = std::max(hi, ord);
    }
    // 1. What an earlier, unacknowledged attempt already stored.
    std::unordered_set<uint64_t> present_events, present_heartbeats;
    if (uncertain) {
      for (const char* table : {"events", "heartbeats"}) {
        auto found = reader_->Query("SELECT ord FROM " + tables(table) + " WHERE app IN " +
                                    QuoteList(apps) + " AND node = " + std::to_string(node_) +
                                    " AND ord >= " + std::to_string(lo) +
                                    " AND ord <= " + std::to_string(hi));
        if (!found.ok()) return found.status();
        auto& into = std::string(table) == "events" ? present_events : present_heartbeats;
        for (const auto& f : *found) into.insert(ParseU64(f[0]));
      }
    }
    // 2. Resends (and late resends of deleted users' events): their identity
    // is known already.
    std::vector<uint8_t> keep(rows.size(), 0);
    Identities idents;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      if (r[0] != "E") continue;
      if (present_events.count(ParseU64(r[1 + kOrd]))) continue;
      keep[i] = 1;
      if (!r[1 + kIdent].empty()) {
        Event e;
        e.type = static_cast<EventType>(ParseI64(r[1 + kType]));
        e.name = r[1 + kName];
        e.device_id = r[1 + kDevice];
        e.session_id = r[1 + kSession];
        e.client_id = r[1 + kClientId];
        e.client_date = r[1 + kClientDate];
        idents[r[1 + kApp]][r[1 + kIdent]] = {e.device_id, EventTombstoneHashes(e)};
      }
    }
    std::set<std::pair<std::string, std::string>> known;
    if (!idents.empty()) {
      auto found = KnownIdentities(*client_, idents);
      if (!found.ok()) return found.status();
      known = std::move(*found);
    }
    // Rows an earlier attempt stored count as seen: a resend of one of them
    // in the same round is a resend.
    std::set<std::pair<std::string, std::string>> seen;
    for (const auto& r : rows) {
      if (r[0] == "E" && !r[1 + kIdent].empty() && present_events.count(ParseU64(r[1 + kOrd]))) {
        seen.emplace(r[1 + kApp], r[1 + kIdent]);
      }
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!keep[i]) continue;
      const auto& r = rows[i];
      const std::string& ident = r[1 + kIdent];
      if (ident.empty()) continue;
      if (known.count({r[1 + kApp], ident}) || !seen.emplace(r[1 + kApp], ident).second)
        keep[i] = 0;
    }
    // 3. Heartbeats: credited to the session they name, or the device's most
    // recent one, as things stood when each arrived (§1.8).
    std::string heartbeat_rows;
    std::map<std::string, std::set<std::string>> hb_devices;  // app -> devices
    for (const auto& r : rows) {
      if (r[0] == "H" && !present_heartbeats.count(ParseU64(r[5]))) hb_devices[r[1]].insert(r[2]);
    }
    if (!hb_devices.empty()) {
      // app -> device -> session hash -> state
      std::map<std::string, std::map<std::string, std::unordered_map<uint64_t, SessionState>>>
          state;
      for (const auto& [app, devices] : hb_devices) {
        for (const std::string& d : devices) state[app][d];
        auto found = reader_->Query(
            "SELECT sess_h, any(device), any(session), min(ord), countIf(type = 1),"
            " minIf(time, type = 1), min(time) FROM (SELECT * FROM " +
            tables("events") + " WHERE app = " + SqlQuote(app) + " AND device IN " +
            QuoteList(devices) + ") ANY LEFT JOIN (SELECT app, user_h, max(ord) AS del_ord FROM " +
            tables("deletions") + " WHERE app = " + SqlQuote(app) +
            " GROUP BY app, user_h) USING app, user_h WHERE ord > del_ord GROUP BY sess_h");
        if (!found.ok()) return found.status();
        for (const auto& f : *found) {
          SessionState& s = state[app][f[1]][ParseU64(f[0])];
          s.device = f[1];
          s.session = f[2];
          s.created = ParseU64(f[3]);
          s.inits = ParseI64(f[4]);
          s.init_min = s.inits > 0 ? ParseI64(f[5]) : INT64_MAX;
          s.any_min = ParseI64(f[6]);
        }
      }
      for (size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        if (r[0] == "E") {
          if (!keep[i] && !present_events.count(ParseU64(r[1 + kOrd]))) continue;
          auto app_it = state.find(r[1 + kApp]);
          if (app_it == state.end()) continue;
          auto dev_it = app_it->second.find(r[1 + kDevice]);
          if (dev_it == app_it->second.end()) continue;
          SessionState& s = dev_it->second[ParseU64(r[1 + kSessH])];
          s.device = r[1 + kDevice];
          s.session = r[1 + kSession];
          s.created = std::min(s.created, ParseU64(r[1 + kOrd]));
          const int64_t t = ParseI64(r[1 + kTime]);
          if (r[1 + kType] == "1") {
            ++s.inits;
            s.init_min = std::min(s.init_min, t);
          }
          s.any_min = std::min(s.any_min, t);
          continue;
        }
        const uint64_t ord = ParseU64(r[5]);
        if (present_heartbeats.count(ord)) continue;
        const auto& sessions = state[r[1]][r[2]];
        const SessionState* credited = nullptr;
        uint64_t credited_hash = 0;
        if (!r[3].empty()) {
          const uint64_t h = SessionHash(r[1], r[2], r[3]);
          auto it = sessions.find(h);
          if (it != sessions.end() && it->second.created < ord) {
            credited = &it->second;
            credited_hash = h;
          }
        } else {
          for (const auto& [h, s] : sessions) {
            if (s.created >= ord) continue;
            if (!credited || s.Start() > credited->Start() ||
                (s.Start() == credited->Start() && s.created > credited->created)) {
              credited = &s;
              credited_hash = h;
            }
          }
        }
        if (!credited) continue;
        AppendTsv(&heartbeat_rows, r[1]);
        heartbeat_rows += "\t" + r[4] + "\t" + r[5] + "\t" + std::to_string(credited_hash) + "\t";
        AppendTsv(&heartbeat_rows, credited->device);
        heartbeat_rows.push_back('\t');
        AppendTsv(&heartbeat_rows, credited->session);
        heartbeat_rows += "\t" + r[6] + "\n";
      }
    }
    // 4. The rows: events first, then their identities (an identity without
    // its event would drop the event's resend), then heartbeats.
    std::string event_rows, ident_rows;
    Identities written;
    size_t forwarded = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      if (r[0] != "E") continue;
      const bool present = present_events.count(ParseU64(r[1 + kOrd])) > 0;
      if (keep[i]) {
        event_rows += JoinTsv(r, 1, kEventFields);
        ++forwarded;
      }
      if ((keep[i] || present) && !r[1 + kIdent].empty()) {
        written[r[1 + kApp]][r[1 + kIdent]].device = r[1 + kDevice];
        AppendTsv(&ident_rows, r[1 + kApp]);
        ident_rows.push_back('\t');
        AppendTsv(&ident_rows, r[1 + kIdent]);
        ident_rows.push_back('\n');
      }
    }
    for (const auto& [table, data] :
         {std::pair<const char*, const std::string*>{"events", &event_rows},
          {"idents", &ident_rows},
          {"heartbeats", &heartbeat_rows}}) {
      if (data->empty()) continue;
      auto st = client_->Execute("INSERT INTO " + tables(table) + " FORMAT TabSeparated", *data,
                                 InsertSettings(options_));
      if (!st.ok()) return st.status();
    }
    // 5. Another node may have stored one of these identities while this
    // round was under way (a resend sent to it while this node's insert was
    // in flight). Whichever node's insert lands last sees both copies here;
    // the later order is hidden from every answer.
    if (!written.empty()) NUCLEON_RETURN_IF_ERROR(HideDuplicates(written));
    forwarded_events_.fetch_add(forwarded);
    return Status::Ok();
  }

  // Records, in `duplicates`, every copy but the first (by order) of an
  // identity stored more than once among `written`.
  Status HideDuplicates(const Identities& written) {
    const ClickHouseTables tables(options_);
    std::string hidden;
    Status st = ForEachPart(written, [&](const Identities& part) -> Status {
      std::string which;
      for (const auto& [app, list] : part) {
        std::string idents;
        std::set<std::string> devices;
        for (const auto& [ident, a] : list) {
          idents += (idents.empty() ? "" : ", ") + SqlQuote(ident);
          devices.insert(a.device);
        }
        which += (which.empty() ? "" : " OR ") + std::string("(app = ") + SqlQuote(app) +
                 " AND device IN " + QuoteList(devices) + " AND ident IN (" + idents + "))";
      }
      auto found = reader_->Query("SELECT app, arraySort(groupUniqArray(ord)) AS ords FROM " +
                                  tables("events") + " WHERE " + which +
                                  " GROUP BY app, ident HAVING length(ords) > 1");
      if (!found.ok()) return found.status();
      for (const auto& r : *found) {
        // [first,second,...]: all but the first are copies.
        std::string list = r[1].size() > 2 ? r[1].substr(1, r[1].size() - 2) : "";
        size_t at = list.find(',');
        while (at != std::string::npos) {
          const size_t next = list.find(',', at + 1);
          AppendTsv(&hidden, r[0]);
          hidden +=
              "\t" +
              list.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1) +
              "\n";
          at = next;
        }
      }
      return Status::Ok();
    });
    NUCLEON_RETURN_IF_ERROR(st);
    if (hidden.empty()) return Status::Ok();
    LogInfo("ClickHouse: an event stored by two nodes at once is counted once");
    auto done = client_->Execute("INSERT INTO " + tables("duplicates") + " FORMAT TabSeparated",
                                 hidden, InsertSettings(options_));
    if (!done.ok()) return done.status();
    reader_->ForgetDuplicates();
    return Status::Ok();
  }

  // Calls `fn` with parts of `all` of at most kIdentsPerStatement identities.
  static Status ForEachPart(const Identities& all,
                            const std::function<Status(const Identities&)>& fn) {
    Identities part;
    size_t in_part = 0;
    for (const auto& [app, list] : all) {
      for (const auto& [ident, a] : list) {
        part[app][ident] = a;
        if (++in_part == kIdentsPerStatement) {
          NUCLEON_RETURN_IF_ERROR(fn(part));
          part.clear();
          in_part = 0;
        }
      }
    }
    return in_part > 0 ? fn(part) : Status::Ok();
  }

  ClickHouseStoreOptions options_;
  std::unique_ptr<ClickHouseClient> client_;
  std::unique_ptr<ClickHouseClient> append_client_;  // writer thread
  std::unique_ptr<ClickHouseReader> reader_;
  std::unique_ptr<ClickHouseSharedLive> shared_live_;
  Spool spool_;
  std::string spool_dir_;
  int spool_lock_ = -1;
  uint64_t node_ = 0;
  OrderClock clock_{0};  // writer thread
  uint64_t open_ord_ = 0;
  std::unordered_set<uint64_t> recent_[2];  // writer thread

  std::thread forwarder_;
  std::thread mutator_;
  std::deque<std::string> mutations_;  // under mu_
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;     // under mu_
  bool failed_once_ = false;  // under mu_
  std::atomic<bool> schema_ready_{false};
  std::atomic<bool> healthy_{true};
  std::atomic<uint64_t> forward_failures_{0};
  std::atomic<uint64_t> forwarded_events_{0};
  static constexpr int64_t kDayMs = 86400000;
  std::mutex retention_mu_;
  RetentionPolicy retention_;   // under retention_mu_
  bool retention_due_ = false;  // under retention_mu_
  int64_t retention_day_ = 0;   // the UTC day of the last mutations, under retention_mu_
  std::atomic<uint64_t> retention_loads_{0}, retention_mutations_{0};
};

}  // namespace

Result<std::unique_ptr<EventStore>> OpenClickHouseEventStore(
    const std::string& data_dir, const ClickHouseStoreOptions& options) {
  auto store = std::make_unique<ClickHouseEventStore>();
  NUCLEON_RETURN_IF_ERROR(store->Open(data_dir, options));
  return std::unique_ptr<EventStore>(std::move(store));
}

}  // namespace nucleon
