#include "store/clickhouse/clickhouse_event_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
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
// Identities listed in one statement (an older database's `idents`,
// tombstones): statements stay well under the size ClickHouse parses.
constexpr size_t kIdentsPerStatement = 4000;
// An identity lookup reads `identities` in ranges of dates: dates of one app
// closer than this share a range, and an app has at most so many ranges
// (wider gaps otherwise). The statement travels in the URL: its condition
// stays under kMaxWhereChars (more apps: more statements).
constexpr int64_t kRangeGapMs = 10000;
constexpr size_t kMaxRangesPerApp = 32;
constexpr size_t kMaxWhereChars = 6000;
// Identities of recently spooled events remembered on the node (two
// generations of this many), so the live window does not show a resend
// twice; ClickHouse's `identities` table is what decides.
constexpr size_t kRecentIdents = 250000;

// The spool's rows: "F\t" + an events row, or a heartbeat
// "H\tapp\tdevice\tsession\tnode\tord\treceived\n". "E\t" + an events row is
// one an earlier release spooled, whose property arrays were escaped once
// more than ClickHouse reads them (undone when forwarded: AppendLegacyRow).
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

uint64_t ParseU64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}
int64_t ParseI64(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// One spooled row, read in place: its fields as written (TabSeparated
// escapes kept), so that an events row goes to ClickHouse as it is.
struct SpoolRow {
  bool event = false;
  bool legacy = false;  // "E": property arrays escaped once more
  std::string_view text;                // the fields after the kind, without the newline
  const std::string_view* f = nullptr;  // kEventFields of them (a heartbeat's: 6)
  size_t first = 0;                     // where they start in the round's fields
};

// Splits a forwarding round's payload into rows whose fields go to `fields`;
// Internal for a damaged row.
Status SplitSpool(std::string_view payload, std::vector<SpoolRow>* rows,
                  std::vector<std::string_view>* fields) {
  rows->clear();
  fields->clear();
  size_t pos = 0;
  while (pos < payload.size()) {
    size_t end = payload.find('\n', pos);
    if (end == std::string_view::npos) end = payload.size();
    const std::string_view line = payload.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 2 || (line[0] != 'F' && line[0] != 'E' && line[0] != 'H') ||
        line[1] != '\t') {
      return Status::Internal("a damaged row in the spool");
    }
    SpoolRow& r = rows->emplace_back();
    r.event = line[0] != 'H';
    r.legacy = line[0] == 'E';
    r.text = line.substr(2);
    r.first = fields->size();
    const size_t want = r.event ? size_t{kEventFields} : size_t{6};
    size_t n = 0, from = 0;
    for (;;) {
      const size_t tab = r.text.find('\t', from);
      if (n == want) return Status::Internal("a damaged row in the spool");
      fields->push_back(r.text.substr(from, tab == std::string_view::npos ? tab : tab - from));
      ++n;
      if (tab == std::string_view::npos) break;
      from = tab + 1;
    }
    if (n != want) return Status::Internal("a damaged row in the spool");
  }
  for (SpoolRow& r : *rows) r.f = fields->data() + r.first;
  return Status::Ok();
}

// A spooled field's value (escapes undone; most fields have none).
std::string Plain(std::string_view field) {
  if (field.find('\\') == std::string_view::npos) return std::string(field);
  auto rows = ParseTsv(field);
  return rows.ok() && rows->size() == 1 && rows->front().size() == 1 ? rows->front().front()
                                                                     : std::string(field);
}

// An events row an earlier release spooled ("E"), as ClickHouse reads it:
// its property arrays unescaped once (they were written as TabSeparated
// text; ClickHouse reads an array field as a literal, as it is).
void AppendLegacyRow(const SpoolRow& r, std::string* out) {
  for (size_t i = 0; i < kEventFields; ++i) {
    if (i) out->push_back('\t');
    const bool array = std::find(std::begin(kPropArrayFields), std::end(kPropArrayFields), i) !=
                       std::end(kPropArrayFields);
    if (array) {
      out->append(Plain(r.f[i]));
    } else {
      out->append(r.f[i]);
    }
  }
}

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
    std::string& rows = append_rows_;  // kept from batch to batch
    rows.clear();
    std::unordered_set<uint64_t> idents;  // of this batch
    // Resends of events stored earlier (by any node, or before a restart)
    // are told apart here when ClickHouse answers quickly, so that
    // `inserted` is exact; the forwarder checks again in any case.
    std::vector<std::string> identities(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].type != EventType::kHeartbeat) identities[i] = IdentityHash(events[i]);
    }
    Copies known;  // any copy: the identity is stored (or being stored) already
    // Only while the forwarder keeps up: under load it decides alone, and
    // the ack does not wait for ClickHouse.
    const uint64_t appended = spool_.appended(), forwarded = spool_.forwarded();
    if (schema_ready_.load() && healthy_.load() &&
        appended - std::min(appended, forwarded) < kQuietBacklogBytes) {
      std::vector<IdentityKey> asked;
      bool ok = true;
      for (size_t i = 0; i < events.size() && ok; ++i) {
        if (identities[i].empty()) continue;
        IdentityKey& k = asked.emplace_back();
        k.app = events[i].app_id;
        k.ident = identities[i];
        k.t = IdentityTime(events[i].client_date);
        auto tombstones = HasTombstones(*append_client_, k.app);
        ok = tombstones.ok();
        if (ok && *tombstones) k.tombstones = EventTombstoneHashes(events[i]);
      }
      auto found = ok ? LookupIdentities(*append_client_, asked, 1) : Result<Copies>(Copies{});
      if (found.ok()) known = std::move(*found);
    }
    const int64_t now = NowMs();
    const Event* hashed = nullptr;  // the event session_hash and user_hash are of
    uint64_t session_hash = 0, user_hash = 0;
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
        if (SeenRecently(key) || known.count(ident) || !idents.insert(key).second) {
          continue;
        }
      }
      rows += "F\t";
      // A batch's events mostly come a session at a time: its hashes once.
      const Event* h = hashed;
      if (!h || e.app_id != h->app_id || e.device_id != h->device_id ||
          e.session_id != h->session_id || e.user_key != h->user_key) {
        hashed = &e;
        session_hash = SessionHash(e.app_id, e.device_id, e.session_id);
        user_hash = UserHash(e.app_id, e.user_key);
      }
      AppendEventRow(e, node_, ord, {ident, session_hash, user_hash}, &rows);
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
    // The rollups lose the same buckets; a session's part goes once its
    // latest event or heartbeat is older than the cut.
    for (const auto& [table, column] : {std::pair<const char*, const char*>{"events", "time"},
                                        {"event_times", "time"},
                                        {"user_events", "time"},
                                        {"prop_values", "time"},
                                        {"error_times", "time"},
                                        {"heartbeats", "r"},
                                        {"user_buckets", "bucket * 900000"},
                                        {"init_values", "bucket * 900000"},
                                        {"session_parts", "finalizeAggregation(last)"}}) {
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

  Result<std::vector<QuickGlanceCounts>> QuickGlances(std::string_view app_id,
                                                      std::span<const TimeSpan> periods) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->QuickGlances(app_id, periods));
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
  Result<SessionDays> Sessions(std::string_view app_id, const QueryRange& range) override {
    NUCLEON_RETURN_IF_ERROR(ReadyToRead());
    return Answer(reader_->SessionsByDay(app_id, range));
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
    // deletion row hides them. The identities stay in `identities`: late resends
    // of the removed events are recognised there and dropped.
    const std::string on_cluster =
        tables.cluster().empty() ? "" : " ON CLUSTER " + SqlIdentifier(tables.cluster());
    const std::string suffix = tables.cluster().empty() ? "" : "_local";
    std::vector<std::string> mutations;
    for (const char* table :
         {"events", "event_times", "user_events", "prop_values", "error_times"}) {
      mutations.push_back("ALTER TABLE " + tables(table + suffix) + on_cluster +
                          " DELETE WHERE app = " + SqlQuote(app) + " AND user_h = " +
                          std::to_string(user_h) + " AND ord < " + std::to_string(ord));
    }
    // Its rollups go whole: a deleted user's numbers are read from the
    // events from now on, and so are the sessions it was in.
    for (const char* rollup : {"user_buckets", "init_values"}) {
      mutations.push_back("ALTER TABLE " + tables(rollup + suffix) + on_cluster +
                          " DELETE WHERE app = " + SqlQuote(app) +
                          " AND user_h = " + std::to_string(user_h));
    }
    mutations.push_back(shared_live_->DeleteUserStatement(app_id, user_h, OrderClock::TimeOf(ord)));
    if (!sessions->empty()) {
      std::string list;
      for (uint64_t h : *sessions) list += (list.empty() ? "" : ", ") + std::to_string(h);
      mutations.push_back("ALTER TABLE " + tables("heartbeats" + suffix) + on_cluster +
                          " DELETE WHERE app = " + SqlQuote(app) + " AND sess_h IN (" + list +
                          ") AND ord < " + std::to_string(ord));
      mutations.push_back("ALTER TABLE " + tables("session_parts" + suffix) + on_cluster +
                          " DELETE WHERE app = " + SqlQuote(app) + " AND sess_h IN (" + list + ")");
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

  // An identity a round or a batch asks about: its app, hash, device, date
  // key (IdentityTime) and its tombstone hashes (the forms a migrated
  // deletion has).
  struct IdentityKey {
    std::string app, ident;
    int64_t t = 0;
    std::array<int64_t, 2> tombstones{};  // asked only for an app with tombstones
  };
  // A copy of an identity in ClickHouse: (order, node). {0, 0} stands for
  // one stored long ago whose order is not known (an older database's
  // `idents`) or deleted in a migrated embedded store (`tombstones`): it
  // comes before every other.
  using Copy = std::pair<uint64_t, uint64_t>;
  using Copies = std::unordered_map<std::string, std::set<Copy>>;

  // The identities with at least `min_copies` copies in `identities` (a
  // round that wrote its own asks for 2: a lone copy is its own) or any in
  // an older database or the tombstones, by identity (its hash covers its
  // app); with `min_copies` > 1, with every copy.
  Result<Copies> LookupIdentities(ClickHouseClient& client, const std::vector<IdentityKey>& keys,
                                  size_t min_copies) {
    Copies copies;
    if (keys.empty()) return copies;
    const ClickHouseTables tables(options_);
    std::map<std::string, std::vector<const IdentityKey*>> by_app;
    for (const IdentityKey& k : keys) by_app[k.app].push_back(&k);
    // 1. `identities`, through the granules around the dates asked about:
    // per app a few ranges of dates, the identities themselves sent as a
    // table (cheap for ClickHouse to read; the statement, in the URL, stays
    // short).
    std::string where, rows;
    auto run = [&]() -> Status {
      if (where.empty()) return Status::Ok();
      // Which identities have enough copies: usually none, so this answer is
      // short; their copies come in a second statement.
      auto body = client.ExecuteWithTable(
          "SELECT ident FROM " + tables("identities") + " WHERE (" + where +
              ") AND (app, ident) IN keys GROUP BY ident HAVING uniqExact(ord, node) >= " +
              std::to_string(min_copies) + " FORMAT TabSeparated",
          ClickHouseClient::Table{"keys", "app String, ident String", rows});
      if (!body.ok()) return body.status();
      auto found = ParseTsv(*body);
      if (!found.ok()) return found.status();
      std::string listed;
      for (const auto& r : *found) {
        if (r.size() != 1) return Status::Internal("an identities row has the wrong columns");
        copies[r[0]];
        listed += (listed.empty() ? "" : ", ") + SqlQuote(r[0]);
      }
      if (min_copies > 1 && !listed.empty()) {
        auto all = client.Execute("SELECT DISTINCT ident, ord, node FROM " + tables("identities") +
                                  " WHERE (" + where + ") AND ident IN (" + listed +
                                  ") FORMAT TabSeparated");
        if (!all.ok()) return all.status();
        auto rows_found = ParseTsv(*all);
        if (!rows_found.ok()) return rows_found.status();
        for (const auto& r : *rows_found) {
          if (r.size() != 3) return Status::Internal("an identities row has the wrong columns");
          copies[r[0]].emplace(ParseU64(r[1]), ParseU64(r[2]));
        }
      }
      where.clear();
      rows.clear();
      return Status::Ok();
    };
    for (const auto& [app, list] : by_app) {
      std::vector<int64_t> times;
      times.reserve(list.size());
      for (const IdentityKey* k : list) times.push_back(k->t);
      std::sort(times.begin(), times.end());
      times.erase(std::unique(times.begin(), times.end()), times.end());
      // Dates closer than `gap` share a range; fewer ranges the wider it is.
      std::vector<std::pair<int64_t, int64_t>> ranges;
      for (int64_t gap = kRangeGapMs;; gap *= 4) {
        ranges.clear();
        for (int64_t t : times) {
          if (!ranges.empty() && t - ranges.back().second <= gap) {
            ranges.back().second = t;
          } else {
            ranges.emplace_back(t, t);
          }
        }
        if (ranges.size() <= kMaxRangesPerApp) break;
      }
      std::string in_ranges;
      for (const auto& [lo, hi] : ranges) {
        in_ranges += (in_ranges.empty() ? "" : " OR ") + std::string("t ") +
                     (lo == hi ? "= " + std::to_string(lo)
                               : "BETWEEN " + std::to_string(lo) + " AND " + std::to_string(hi));
      }
      const std::string clause = "(app = " + SqlQuote(app) + " AND (" + in_ranges + "))";
      if (!where.empty() && where.size() + clause.size() > kMaxWhereChars) {
        NUCLEON_RETURN_IF_ERROR(run());
      }
      where += (where.empty() ? "" : " OR ") + clause;
      for (const IdentityKey* k : list) {
        AppendTsv(&rows, k->app);
        rows.push_back('\t');
        AppendTsv(&rows, k->ident);
        rows.push_back('\n');
      }
    }
    NUCLEON_RETURN_IF_ERROR(run());
    // 2. What only an older database knows (its `idents`), and the deleted
    // events of migrated apps (`tombstones`): listed in the statement, a few
    // thousand at a time. Neither is written any more; most deployments have
    // neither.
    std::vector<const IdentityKey*> listed;
    for (const auto& [app, list] : by_app) {
      auto tombstones = HasTombstones(client, app);
      if (!tombstones.ok()) return tombstones.status();
      if (*tombstones || legacy_idents_.load())
        listed.insert(listed.end(), list.begin(), list.end());
    }
    for (size_t from = 0; from < listed.size(); from += kIdentsPerStatement) {
      const size_t to = std::min(listed.size(), from + kIdentsPerStatement);
      std::map<std::string, std::string> idents, hashes;  // app -> list
      std::map<std::pair<std::string, std::string>, std::string> of_tombstone;
      for (size_t i = from; i < to; ++i) {
        const IdentityKey& k = *listed[i];
        std::string& list = idents[k.app];
        list += (list.empty() ? "" : ", ") + SqlQuote(k.ident);
        auto tombstones = HasTombstones(client, k.app);
        if (!tombstones.ok() || !*tombstones) continue;
        for (int64_t hash : k.tombstones) {
          std::string& h = hashes[k.app];
          h += (h.empty() ? "" : ", ") + std::to_string(hash);
          of_tombstone[{k.app, std::to_string(hash)}] = k.ident;
        }
      }
      std::string sql;
      if (legacy_idents_.load()) {
        std::string which;
        for (const auto& [app, list] : idents) {
          which += (which.empty() ? "" : " OR ") + std::string("(app = ") + SqlQuote(app) +
                   " AND ident IN (" + list + "))";
        }
        sql = "SELECT app, ident FROM " + tables("idents") + " WHERE " + which;
      }
      for (const auto& [app, list] : hashes) {
        sql += (sql.empty() ? "" : " UNION ALL ") +
               std::string("SELECT app, toString(hash) FROM ") + tables("tombstones") +
               " WHERE app = " + SqlQuote(app) + " AND hash IN (" + list + ")";
      }
      if (sql.empty()) continue;
      auto body = client.Execute(sql + " FORMAT TabSeparated");
      if (!body.ok()) return body.status();
      auto found = ParseTsv(*body);
      if (!found.ok()) return found.status();
      for (const auto& r : *found) {
        if (r.size() != 2) return Status::Internal("an identity lookup row has the wrong columns");
        auto it = of_tombstone.find({r[0], r[1]});
        copies[it != of_tombstone.end() ? it->second : r[1]].emplace(0, 0);
      }
    }
    return copies;
  }

  // Whether ClickHouse holds tombstones of the app (a migrated app's deleted
  // events). Asked once per app: `nucleon migrate` writes them before the
  // catalog, so before any node accepts the app's events.
  Result<bool> HasTombstones(ClickHouseClient& client, const std::string& app) {
    {
      std::lock_guard lock(tombstones_mu_);
      if (auto it = tombstone_apps_.find(app); it != tombstone_apps_.end()) return it->second;
    }
    auto body = client.Execute("SELECT count() FROM " + ClickHouseTables(options_)("tombstones") +
                               " WHERE app = " + SqlQuote(app));
    if (!body.ok()) return body.status();
    const bool any = std::strtoull(body->c_str(), nullptr, 10) > 0;
    std::lock_guard lock(tombstones_mu_);
    tombstone_apps_[app] = any;
    return any;
  }

  // Whether this database keeps identities in the table of schema 3 (its
  // rows are asked about too, listed).
  Status LoadIdentitySources() {
    const ClickHouseTables tables(options_);
    auto exists = client_->Execute("EXISTS TABLE " + tables("idents"));
    if (!exists.ok()) return exists.status();
    bool legacy = false;
    if (std::atoi(exists->c_str()) == 1) {
      auto count = client_->Execute("SELECT count() FROM " + tables("idents"));
      if (!count.ok()) return count.status();
      legacy = std::strtoull(count->c_str(), nullptr, 10) > 0;
    }
    legacy_idents_.store(legacy);
    return Status::Ok();
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
        if (st.ok()) st = LoadIdentitySources();
        if (!st.ok()) {
          fail(st);
          continue;
        }
        schema_ready_.store(true);
      }
      std::string& payload = round_payload_;
      payload.clear();
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
    std::vector<SpoolRow>& rows = round_rows_;
    NUCLEON_RETURN_IF_ERROR(SplitSpool(payload, &rows, &round_fields_));
    const ClickHouseTables tables(options_);
    std::set<std::string> apps;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const SpoolRow& r : rows) {
      if (apps.empty() || *apps.rbegin() != r.f[0]) apps.insert(Plain(r.f[0]));
      const uint64_t ord = ParseU64(r.event ? r.f[kOrd] : r.f[4]);
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
    // 2. Identities. This node's copies go in first, under their orders;
    // then every copy ClickHouse holds is read back. The first copy by order
    // is the one stored: a later one is a resend (to any node, at any time,
    // or one of a deleted user's events), dropped. Two nodes that store one
    // identity at the same moment both see the other's copy in at least one
    // of their reads (each writes before it reads): the node holding the
    // first copy records the others in `duplicates`, hidden from every
    // answer, before its events go in.
    std::string& identity_rows = round_identities_;
    identity_rows.clear();
    std::vector<IdentityKey> keys;
    {
      std::unordered_set<std::string_view> asked;  // identities hash their app
      for (const SpoolRow& r : rows) {
        if (!r.event || r.f[kIdent].empty()) continue;
        const std::string client_date = Plain(r.f[kClientDate]);
        const int64_t t = IdentityTime(client_date);
        identity_rows.append(r.f[kApp]);
        identity_rows += "\t" + std::to_string(t) + "\t";
        identity_rows.append(r.f[kIdent]);
        identity_rows.push_back('\t');
        identity_rows.append(r.f[kNode]);
        identity_rows.push_back('\t');
        identity_rows.append(r.f[kOrd]);
        identity_rows.push_back('\n');
        if (!asked.insert(r.f[kIdent]).second) continue;
        IdentityKey& k = keys.emplace_back();
        k.app = Plain(r.f[kApp]);
        k.ident = std::string(r.f[kIdent]);
        k.t = t;
        auto tombstones = HasTombstones(*client_, k.app);
        if (!tombstones.ok()) return tombstones.status();
        if (*tombstones) {
          Event e;
          e.type = static_cast<EventType>(ParseI64(r.f[kType]));
          e.name = Plain(r.f[kName]);
          e.device_id = Plain(r.f[kDevice]);
          e.session_id = Plain(r.f[kSession]);
          e.client_id = Plain(r.f[kClientId]);
          e.client_date = client_date;
          k.tombstones = EventTombstoneHashes(e);
        }
      }
    }
    if (!identity_rows.empty()) {
      auto st = client_->Execute("INSERT INTO " + tables("identities") + " FORMAT TabSeparated",
                                 identity_rows, InsertSettings(options_));
      if (!st.ok()) return st.status();
    }
    // Only identities with another copy than this node's own come back.
    auto copies = LookupIdentities(*client_, keys, 2);
    if (!copies.ok()) return copies.status();
    std::vector<uint8_t> keep(rows.size(), 0);
    std::string hidden;  // `duplicates` rows
    std::string ident;
    for (size_t i = 0; i < rows.size(); ++i) {
      const SpoolRow& r = rows[i];
      if (!r.event) continue;
      const uint64_t ord = ParseU64(r.f[kOrd]);
      const bool present = present_events.count(ord) > 0;
      if (r.f[kIdent].empty()) {
        keep[i] = !present;
        continue;
      }
      const Copy own{ord, node_};
      ident.assign(r.f[kIdent]);
      auto it = copies->find(ident);
      if (it != copies->end() && !it->second.empty() && *it->second.begin() < own) {
        continue;  // a later copy
      }
      keep[i] = !present;
      if (it == copies->end()) continue;
      // The first copy: another node's later copies are hidden (this node's
      // own are in this round, and dropped here).
      for (const Copy& other : it->second) {
        if (other.second == node_) continue;
        hidden.append(r.f[kApp]);
        hidden += "\t" + std::to_string(other.first) + "\n";
      }
    }
    if (!hidden.empty()) {
      LogInfo("ClickHouse: an event stored by two nodes at once is counted once");
      auto done = client_->Execute("INSERT INTO " + tables("duplicates") + " FORMAT TabSeparated",
                                   hidden, InsertSettings(options_));
      if (!done.ok()) return done.status();
      reader_->ForgetDuplicates();
    }
    // 3. Heartbeats: credited to the session they name, or the device's most
    // recent one, as things stood when each arrived (§1.8).
    std::string heartbeat_rows;
    std::map<std::string, std::set<std::string>> hb_devices;  // app -> devices
    for (const SpoolRow& r : rows) {
      if (!r.event && !present_heartbeats.count(ParseU64(r.f[4]))) {
        hb_devices[Plain(r.f[0])].insert(Plain(r.f[1]));
      }
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
        const SpoolRow& row = rows[i];
        if (row.event) {
          if (!keep[i] && !present_events.count(ParseU64(row.f[kOrd]))) continue;
          auto app_it = state.find(Plain(row.f[kApp]));
          if (app_it == state.end()) continue;
          auto dev_it = app_it->second.find(Plain(row.f[kDevice]));
          if (dev_it == app_it->second.end()) continue;
          SessionState& s = dev_it->second[ParseU64(row.f[kSessH])];
          s.device = Plain(row.f[kDevice]);
          s.session = Plain(row.f[kSession]);
          s.created = std::min(s.created, ParseU64(row.f[kOrd]));
          const int64_t t = ParseI64(row.f[kTime]);
          if (row.f[kType] == "1") {
            ++s.inits;
            s.init_min = std::min(s.init_min, t);
          }
          s.any_min = std::min(s.any_min, t);
          continue;
        }
        // app, device, session, node, ord, received
        const std::array<std::string, 6> r = {Plain(row.f[0]),       Plain(row.f[1]),
                                              Plain(row.f[2]),       std::string(row.f[3]),
                                              std::string(row.f[4]), std::string(row.f[5])};
        const uint64_t ord = ParseU64(r[4]);
        if (present_heartbeats.count(ord)) continue;
        const auto& sessions = state[r[0]][r[1]];
        const SessionState* credited = nullptr;
        uint64_t credited_hash = 0;
        if (!r[2].empty()) {
          const uint64_t h = SessionHash(r[0], r[1], r[2]);
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
        AppendTsv(&heartbeat_rows, r[0]);
        heartbeat_rows += "\t" + r[3] + "\t" + r[4] + "\t" + std::to_string(credited_hash) + "\t";
        AppendTsv(&heartbeat_rows, credited->device);
        heartbeat_rows.push_back('\t');
        AppendTsv(&heartbeat_rows, credited->session);
        heartbeat_rows += "\t" + r[5] + "\n";
      }
    }
    // 4. The rows: events, then heartbeats.
    std::string& event_rows = round_events_;
    event_rows.clear();
    size_t forwarded = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!keep[i]) continue;
      if (rows[i].legacy) {
        AppendLegacyRow(rows[i], &event_rows);
      } else {
        event_rows.append(rows[i].text);
      }
      event_rows.push_back('\n');
      ++forwarded;
    }
    for (const auto& [table, data] :
         {std::pair<const char*, const std::string*>{"events", &event_rows},
          {"heartbeats", &heartbeat_rows}}) {
      if (data->empty()) continue;
      auto st = client_->Execute("INSERT INTO " + tables(table) + " FORMAT TabSeparated", *data,
                                 InsertSettings(options_));
      if (!st.ok()) return st.status();
    }
    forwarded_events_.fetch_add(forwarded);
    return Status::Ok();
  }

  ClickHouseStoreOptions options_;
  // The forwarder's buffers, kept from round to round.
  std::string round_payload_, round_identities_, round_events_;
  std::vector<SpoolRow> round_rows_;
  std::vector<std::string_view> round_fields_;
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
  std::string append_rows_;                 // writer thread

  std::thread forwarder_;
  std::thread mutator_;
  std::deque<std::string> mutations_;  // under mu_
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;     // under mu_
  bool failed_once_ = false;  // under mu_
  std::atomic<bool> schema_ready_{false};
  // This database keeps identities of schema 3 too (LoadIdentitySources,
  // before schema_ready_).
  std::atomic<bool> legacy_idents_{false};
  std::mutex tombstones_mu_;
  std::unordered_map<std::string, bool> tombstone_apps_;  // under tombstones_mu_
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
