// nucleon_load: the ingest benchmark's load generator.
//
// Opens N connections to a running server and sends batches of 4.x-SDK-shaped
// tracking events, either as keep-alive HTTP POSTs to /app/:appId/track (one
// request in flight per connection) or over the tracking WebSocket (up to
// --pipeline unacknowledged messages per connection). An event counts as done
// only when its id comes back in a `reportedIds` answer, so with the server's
// --fsync full the result is durable, acknowledged events per second.
//
// Every event is unique by (deviceId, sessionId, id), so the server's dedupe
// never drops one. Ids come from one counter per connection (1..1e6, the SDK's
// range), which also makes the ids in flight on a connection distinct and lets
// an ack be matched to its batch; when the counter wraps, every device of that
// connection starts a new session. Device ids are random per run, so repeated
// runs against one data folder never collide either.
//
// Threading: each --threads thread runs its own io_context; a connection lives
// on exactly one of them and touches only its own state. The few shared values
// (device table, timeline) are written before the threads read them; progress
// is reported to main through Shared's mutex.
//
// Output: one JSON line on stdout, one human line on stderr. Exit 0 when at
// least one event was acknowledged, 1 on a runtime failure, 2 on a usage error.

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace nucleon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using beast::error_code;

constexpr uint64_t kIdSpace = 1'000'000;  // the SDKs' ids are 1..1e6
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kReconnectDelay = std::chrono::milliseconds(200);
constexpr auto kBusyBackoff = std::chrono::milliseconds(50);

enum class Mode { kHttp, kWs };

struct Options {
  std::string host;
  uint16_t port = 0;
  std::string app;
  Mode mode = Mode::kHttp;
  int connections = 8;
  int batch = 50;
  int pipeline = 4;
  double seconds = 10;
  double warmup = 1;
  double drain = 5;
  int devices = 1000;
  int threads = 1;
  bool deflate = false;
  uint64_t seed = 0;
};

// ---------------------------------------------------------------- events

// xorshift64*: plenty for picking names and props, and cheap on the hot path.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed ? seed : 0x9e3779b97f4a7c15ULL) {}
  uint64_t Next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545f4914f6cdd1dULL;
  }
  // Uniform-enough in [lo, hi].
  int64_t Range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(Next() % static_cast<uint64_t>(hi - lo + 1));
  }

 private:
  uint64_t s_;
};

constexpr std::string_view kNames[] = {
    "OPENED_APP",  "CLICKED_BUTTON", "PLAYED_TRACK",   "VIEWED_SCREEN",   "SEARCHED",
    "SAVED_FILE",  "OPENED_FILE",    "SYNC_COMPLETED", "CHANGED_SETTING", "EXPORTED_PDF",
    "SHARED_LINK", "ADDED_TO_CART",  "SIGNED_IN",      "UPLOADED_IMAGE",  "DELETED_ITEM",
    "SYNC_FAILED", "INVITED_USER",   "CHANGED_THEME",  "PURCHASED",       "UPGRADED_PLAN",
};
constexpr size_t kNameCount = std::size(kNames);

enum class PropKind { kString, kInt, kBool };
struct PropSpec {
  std::string_view key;
  PropKind kind;
  int lo, hi;  // kInt range; kString index range into kPropStrings
};
constexpr std::string_view kPropStrings[] = {
    "home",    "editor", "settings", "library", "search", "menu", "shortcut", "toolbar",
    "context", "free",   "pro",      "team",    "pdf",    "png",  "csv",      "json",
};
constexpr PropSpec kProps[] = {
    {"screen", PropKind::kString, 0, 4}, {"duration", PropKind::kInt, 1, 600},
    {"count", PropKind::kInt, 1, 20},    {"source", PropKind::kString, 5, 8},
    {"success", PropKind::kBool, 0, 1},  {"plan", PropKind::kString, 9, 11},
    {"size", PropKind::kInt, 1, 50000},  {"format", PropKind::kString, 12, 15},
};
constexpr size_t kPropCount = std::size(kProps);
static_assert(kPropCount == 8, "the key picks in AppendPayload assume 8 props");

// A simulated machine with its SDK identity; the same for the whole run.
struct Device {
  std::string device_id;  // 15 chars, like the 4.x SDK's hashed machine id
  std::string anon_id;    // 12-char nanoid
  std::string user_id;    // empty for anonymous users
};

std::string RandomString(Rng& rng, size_t n, std::string_view alphabet) {
  std::string s(n, ' ');
  for (auto& c : s) c = alphabet[rng.Next() % alphabet.size()];
  return s;
}

std::vector<Device> MakeDevices(int count, uint64_t seed) {
  constexpr std::string_view kBase62 =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  constexpr std::string_view kNanoid =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
  Rng rng(seed ^ 0xd1b54a32d192ed03ULL);
  std::vector<Device> devices(count);
  for (int i = 0; i < count; ++i) {
    devices[i].device_id = RandomString(rng, 15, kBase62);
    devices[i].anon_id = RandomString(rng, 12, kNanoid);
    if (rng.Next() % 10 < 7) devices[i].user_id = "user-" + RandomString(rng, 8, kBase62);
  }
  return devices;
}

// Zipf-like popularity (s = 1.1): the first names dominate, as in real apps.
std::vector<uint8_t> MakeNameTable() {
  std::vector<double> weight(kNameCount);
  double total = 0;
  for (size_t k = 0; k < kNameCount; ++k) total += weight[k] = 1.0 / std::pow(k + 1.0, 1.1);
  std::vector<uint8_t> table(4096);
  size_t k = 0;
  double cumulative = weight[0] / total;
  for (size_t i = 0; i < table.size(); ++i) {
    while ((i + 0.5) / table.size() > cumulative && k + 1 < kNameCount)
      cumulative += weight[++k] / total;
    table[i] = static_cast<uint8_t>(k);
  }
  return table;
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Builds the `{"data":[...]}` messages of one connection. Each message comes
// from one device (as an SDK's would); a device's session runs for a random
// number of events and opens with an `init` event.
class EventFactory {
 public:
  EventFactory(const std::vector<Device>& devices, std::vector<uint32_t> my_devices,
               const std::vector<uint8_t>& name_table, std::atomic<uint64_t>& next_session,
               uint64_t seed)
      : devices_(devices), name_table_(name_table), next_session_(next_session), rng_(seed) {
    counter_ = rng_.Next() % kIdSpace;  // ids look random, as the SDK's do
    for (uint32_t d : my_devices) slots_.push_back({d, 0, 0, 0});
  }

  // Appends a message of `count` events to `out` (cleared first). The events
  // carry the counter values [*first, *first + count), id = counter % 1e6 + 1.
  void Build(int count, std::string& out, uint64_t* first) {
    out.clear();
    out.reserve(static_cast<size_t>(count) * 260 + 16);
    out += R"({"data":[)";
    *first = counter_;
    Slot& slot = slots_[next_slot_++ % slots_.size()];
    const Device& dev = devices_[slot.device];
    // Dates rise through the message, the last one at most "now": a queue
    // that filled up over the last second or so.
    int64_t date_ms = NowMillis() - count * 20;
    for (int i = 0; i < count; ++i) {
      if (i) out += ',';
      const uint64_t c = counter_++;
      if (c % kIdSpace == 0 && c != 0) ++generation_;  // ids wrap: sessions must change
      if (slot.left == 0 || slot.generation != generation_) {
        slot.session = next_session_.fetch_add(1, std::memory_order_relaxed);
        slot.left = static_cast<int>(rng_.Range(20, 400));
        slot.generation = generation_;
        AppendInit(out, dev, slot, c, date_ms);
      } else {
        AppendEvent(out, dev, slot, c, date_ms);
        --slot.left;
      }
    }
    out += "]}";
  }

 private:
  struct Slot {
    uint32_t device;
    uint64_t session;
    int left;  // events before the session ends
    uint64_t generation;
  };

  void AppendCommon(std::string& out, uint64_t c, int64_t& date_ms) {
    out += R"(,"id":)";
    AppendInt(out, static_cast<int64_t>(c % kIdSpace + 1));
    out += R"(,"date":)";
    date_ms += rng_.Range(0, 20);
    AppendInt(out, date_ms);
  }

  void AppendIdentity(std::string& out, const Device& dev, const Slot& slot) {
    out += R"(,"sessionId":)";
    AppendInt(out, static_cast<int64_t>(slot.session));
    if (!dev.user_id.empty()) {
      out += R"(,"userId":")";
      out += dev.user_id;
      out += '"';
    }
    out += R"(,"anonId":")";
    out += dev.anon_id;
    out += R"(","deviceId":")";
    out += dev.device_id;
    out += '"';
  }

  void AppendInit(std::string& out, const Device& dev, const Slot& slot, uint64_t c,
                  int64_t& date_ms) {
    out += R"({"type":"init")";
    AppendCommon(out, c, date_ms);
    out += R"(,"payload":{"plan":")";
    out += kPropStrings[rng_.Range(9, 11)];
    out += R"(","age":)";
    AppendInt(out, rng_.Range(18, 70));
    out += '}';
    AppendIdentity(out, dev, slot);
    out += R"(,"client":"js","platform":"Linux","osVersion":"6.18.44","locale":"en-US"})";
  }

  void AppendEvent(std::string& out, const Device& dev, const Slot& slot, uint64_t c,
                   int64_t& date_ms) {
    const size_t name = name_table_[rng_.Next() % name_table_.size()];
    out += R"({"type":"event","name":")";
    out += kNames[name];
    out += '"';
    AppendCommon(out, c, date_ms);
    AppendPayload(out, name);
    AppendIdentity(out, dev, slot);
    out += '}';
  }

  // 2-3 props per name; the three key picks never coincide for 8 props.
  void AppendPayload(std::string& out, size_t name) {
    const size_t picks[] = {name % kPropCount, (name * 3 + 1) % kPropCount,
                            (name * 5 + 2) % kPropCount};
    const size_t n = name % 3 == 0 ? 3 : 2;
    out += R"(,"payload":{)";
    for (size_t i = 0; i < n; ++i) {
      const PropSpec& p = kProps[picks[i]];
      if (i) out += ',';
      out += '"';
      out += p.key;
      out += R"(":)";
      switch (p.kind) {
        case PropKind::kString:
          out += '"';
          out += kPropStrings[rng_.Range(p.lo, p.hi)];
          out += '"';
          break;
        case PropKind::kInt:
          AppendInt(out, rng_.Range(p.lo, p.hi));
          break;
        case PropKind::kBool:
          out += rng_.Next() & 1 ? "true" : "false";
          break;
      }
    }
    out += '}';
  }

  const std::vector<Device>& devices_;
  const std::vector<uint8_t>& name_table_;
  std::atomic<uint64_t>& next_session_;
  Rng rng_;
  std::vector<Slot> slots_;
  size_t next_slot_ = 0;
  uint64_t counter_;
  uint64_t generation_ = 0;
};

// Reads the integers of `"reportedIds":[...]` out of an ack. Returns false
// when the text has no such array; `*confirmation` is set for the legacy
// `{"confirmation":true}` answer, which acks everything sent.
bool ParseAck(std::string_view text, std::vector<uint64_t>& ids, bool* confirmation) {
  ids.clear();
  *confirmation = false;
  size_t at = text.find("\"reportedIds\"");
  if (at == std::string_view::npos) {
    *confirmation = text.find("\"confirmation\"") != std::string_view::npos &&
                    text.find("true") != std::string_view::npos;
    return false;
  }
  at = text.find('[', at);
  if (at == std::string_view::npos) return false;
  const char* p = text.data() + at + 1;
  const char* end = text.data() + text.size();
  while (p < end && *p != ']') {
    if (*p >= '0' && *p <= '9') {
      uint64_t v = 0;
      auto [next, ec] = std::from_chars(p, end, v);
      if (ec == std::errc()) ids.push_back(v);
      p = next;
    } else {
      ++p;  // separators, blanks, quotes around an id sent back as a string
    }
  }
  return true;
}

// ---------------------------------------------------------------- results

struct Stats {
  uint64_t events_sent = 0;
  uint64_t messages_sent = 0;
  uint64_t events_acked_window = 0;  // acks that arrived inside the measured window
  uint64_t events_acked_total = 0;
  uint64_t events_missing = 0;      // absent from the answer to their batch
  uint64_t events_lost = 0;         // in flight when the connection failed
  uint64_t events_unacked_end = 0;  // still in flight when the drain time ran out
  uint64_t events_rejected = 0;     // their request got a non-200 answer
  uint64_t duplicate_ids = 0;       // an id acked twice for one batch
  uint64_t unexpected_ids = 0;      // an id matching nothing in flight
  uint64_t empty_acks = 0;          // an answer that acked nothing we had sent
  uint64_t reconnects = 0;
  double max_ack_ms = 0;
  std::vector<float> ack_ms;  // per batch, for batches fully acked in the window
  std::map<std::string, uint64_t> errors;
  std::map<std::string, std::string> error_samples;  // first body per error kind

  void Error(const std::string& what, std::string_view sample = {}) {
    ++errors[what];
    if (!sample.empty() && !error_samples.count(what))
      error_samples[what] = std::string(sample.substr(0, 200));
  }

  void Merge(const Stats& o) {
    events_sent += o.events_sent;
    messages_sent += o.messages_sent;
    events_acked_window += o.events_acked_window;
    events_acked_total += o.events_acked_total;
    events_missing += o.events_missing;
    events_lost += o.events_lost;
    events_unacked_end += o.events_unacked_end;
    events_rejected += o.events_rejected;
    duplicate_ids += o.duplicate_ids;
    unexpected_ids += o.unexpected_ids;
    empty_acks += o.empty_acks;
    reconnects += o.reconnects;
    max_ack_ms = std::max(max_ack_ms, o.max_ack_ms);
    ack_ms.insert(ack_ms.end(), o.ack_ms.begin(), o.ack_ms.end());
    for (const auto& [k, v] : o.errors) errors[k] += v;
    for (const auto& [k, v] : o.error_samples) error_samples.emplace(k, v);
  }
};

struct Timeline {
  Clock::time_point begin;      // end of warm-up: acks count from here
  Clock::time_point end;        // no new batches are sent from here
  Clock::time_point drain_end;  // connections give up on missing acks here
};

// What every connection shares with main.
struct Shared {
  Shared(const Options& options, tcp::endpoint endpoint, const std::vector<Device>& devices,
         const std::vector<uint8_t>& name_table, uint64_t first_session)
      : options(options),
        endpoint(endpoint),
        host_header(options.host + ":" + std::to_string(options.port)),
        target("/app/" + options.app + "/track"),
        devices(devices),
        name_table(name_table),
        next_session(first_session) {}

  const Options& options;
  tcp::endpoint endpoint;
  std::string host_header;
  std::string target;
  const std::vector<Device>& devices;
  const std::vector<uint8_t>& name_table;
  std::atomic<uint64_t> next_session;
  Timeline timeline{};  // written by main before any Start is posted

  std::mutex mu;
  std::condition_variable cv;
  int connected = 0;
  int connect_failed = 0;
  int finished = 0;

  void Count(int Shared::*counter) {
    {
      std::lock_guard lock(mu);
      ++(this->*counter);
    }
    cv.notify_all();
  }
};

// ---------------------------------------------------------------- connections

// State and bookkeeping common to both transports: building batches, matching
// acks to them, and the connect / fail / reconnect / finish life cycle.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& ioc, Shared& shared, std::vector<uint32_t> devices, uint64_t seed)
      : ioc_(ioc),
        shared_(shared),
        opt_(shared.options),
        factory_(shared.devices, std::move(devices), shared.name_table, shared.next_session, seed),
        retry_timer_(ioc),
        drain_timer_(ioc) {}
  virtual ~Connection() = default;

  // First connect; reports to Shared::connected or Shared::connect_failed.
  void Open() {
    asio::post(ioc_, [self = shared_from_this()] { self->Connect(); });
  }

  // Starts sending; Shared::timeline must be set.
  void Start() {
    asio::post(ioc_, [self = shared_from_this()] {
      self->started_ = true;
      self->drain_timer_.expires_at(self->shared_.timeline.drain_end);
      self->drain_timer_.async_wait([self](error_code ec) {
        if (!ec) self->OnDrainExpired();
      });
      self->BeginIo();
    });
  }

  const Stats& stats() const { return stats_; }
  bool ready() const { return ready_; }

  // For main after the io threads stopped: whatever is still in flight.
  void AbandonInFlight() {
    stats_.events_unacked_end += EventsInFlight();
    in_flight_.clear();
  }

 protected:
  struct Batch {
    uint64_t first;  // counter of the first event
    uint32_t count;
    uint32_t acked = 0;
    bool touched = false;
    Clock::time_point sent;
    std::vector<bool> seen;
  };

  virtual void Connect() = 0;
  virtual void BeginIo() = 0;
  virtual void CloseSocket() = 0;
  virtual bool IoPending() const = 0;

  void OnConnected() {
    if (!started_) {
      ready_ = true;
      shared_.Count(&Shared::connected);
    } else {
      BeginIo();
    }
  }

  void OnConnectFailed(error_code ec) {
    if (!started_) {
      stats_.Error("connect: " + ec.message());
      shared_.Count(&Shared::connect_failed);
      return;
    }
    stats_.Error("reconnect: " + ec.message());
    failed_ = true;
    AfterFailure();
  }

  // The current socket failed or was closed by the drain deadline.
  bool Dead() const { return failed_ || drain_expired_; }

  bool Sending() const { return !drain_expired_ && Clock::now() < shared_.timeline.end; }

  // Fills `out` with the next batch and records it as in flight.
  void NextBatch(std::string& out) {
    Batch b;
    factory_.Build(opt_.batch, out, &b.first);
    b.count = static_cast<uint32_t>(opt_.batch);
    b.seen.assign(b.count, false);
    b.sent = Clock::now();
    in_flight_.push_back(std::move(b));
    stats_.events_sent += opt_.batch;
    ++stats_.messages_sent;
  }

  // Applies one answer. Every batch the answer acked any id of is settled by
  // it (the server answers each message once, with all of its ids); an answer
  // that acked nothing settles the oldest batch, whose ids are then missing.
  void OnAck(std::string_view text) {
    const Clock::time_point now = Clock::now();
    const bool in_window = now >= shared_.timeline.begin && now < shared_.timeline.end;
    bool confirmation = false;
    ParseAck(text, ids_, &confirmation);
    if (confirmation) {
      // The legacy answer acks the whole queue.
      const uint64_t n = EventsInFlight();
      stats_.events_acked_total += n;
      if (in_window) stats_.events_acked_window += n;
      for (Batch& b : in_flight_) {
        for (uint32_t i = 0; i < b.count; ++i) b.seen[i] = true;
        b.acked = b.count;
        b.touched = true;
      }
    }
    bool any = confirmation;
    for (uint64_t id : ids_) {
      Batch* b = nullptr;
      uint64_t index = 0;
      if (id >= 1 && id <= kIdSpace) {
        for (Batch& candidate : in_flight_) {
          index = (id - 1 + kIdSpace - candidate.first % kIdSpace) % kIdSpace;
          if (index < candidate.count) {
            b = &candidate;
            break;
          }
        }
      }
      if (!b) {
        ++stats_.unexpected_ids;
        continue;
      }
      any = true;
      b->touched = true;
      if (b->seen[index]) {
        ++stats_.duplicate_ids;
        continue;
      }
      b->seen[index] = true;
      ++b->acked;
      ++stats_.events_acked_total;
      if (in_window) ++stats_.events_acked_window;
    }
    if (!any) {
      ++stats_.empty_acks;
      if (!in_flight_.empty()) in_flight_.front().touched = true;
    }
    for (auto it = in_flight_.begin(); it != in_flight_.end();) {
      if (!it->touched) {
        ++it;
        continue;
      }
      stats_.events_missing += it->count - it->acked;
      if (it->acked == it->count) {
        const double ms = std::chrono::duration<double, std::milli>(now - it->sent).count();
        if (in_window) stats_.ack_ms.push_back(static_cast<float>(ms));
        // Over the whole run, so that a stall at the window's edges shows too.
        stats_.max_ack_ms = std::max(stats_.max_ack_ms, ms);
      }
      it = in_flight_.erase(it);
    }
  }

  uint64_t EventsInFlight() const {
    uint64_t n = 0;
    for (const Batch& b : in_flight_) n += b.count - b.acked;
    return n;
  }

  // A transport operation failed: drop the socket, and once no operation is
  // pending any more either reconnect (still in the run) or finish.
  void OnIoError(error_code ec, const char* where) {
    if (!failed_) {
      failed_ = true;
      if (drain_expired_) {
        // Our own doing: the drain deadline closed the socket.
      } else if (!Sending() && ec == beast::error::timeout) {
        // tcp_stream's own drain deadline (HTTP).
        stats_.events_unacked_end += EventsInFlight();
      } else {
        stats_.Error(std::string(where) + ": " + ec.message());
        stats_.events_lost += EventsInFlight();
      }
      in_flight_.clear();
      CloseSocket();
    }
    if (!IoPending()) AfterFailure();
  }

  void AfterFailure() {
    if (!Sending()) return Finish();
    ++stats_.reconnects;
    retry_timer_.expires_after(kReconnectDelay);
    retry_timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (ec) return;
      if (!self->Sending()) return self->Finish();
      self->failed_ = false;
      self->Connect();
    });
  }

  void OnDrainExpired() {
    if (finished_) return;
    drain_expired_ = true;
    stats_.events_unacked_end += EventsInFlight();
    in_flight_.clear();
    retry_timer_.cancel();
    CloseSocket();
    if (!IoPending()) Finish();
  }

  void Finish() {
    if (finished_) return;
    finished_ = true;
    stats_.events_unacked_end += EventsInFlight();
    in_flight_.clear();
    retry_timer_.cancel();
    drain_timer_.cancel();
    shared_.Count(&Shared::finished);
  }

  asio::io_context& ioc_;
  Shared& shared_;
  const Options& opt_;
  EventFactory factory_;
  Stats stats_;
  std::deque<Batch> in_flight_;
  std::vector<uint64_t> ids_;
  asio::steady_timer retry_timer_;
  asio::steady_timer drain_timer_;
  std::atomic<bool> ready_ = false;  // first connect done; read by main
  bool started_ = false;
  bool failed_ = false;  // the current socket is dead
  bool drain_expired_ = false;
  bool finished_ = false;
};

// HTTP: POST one batch, wait for its answer, repeat, on one keep-alive socket.
class HttpConnection final : public Connection {
 public:
  using Connection::Connection;

 private:
  void Connect() override {
    stream_.emplace(ioc_);
    buffer_.clear();  // bytes left from a failed socket must not prefix the next answer
    stream_->expires_after(kConnectTimeout);
    busy_ = true;
    stream_->async_connect(shared_.endpoint, [self = Self()](error_code ec) {
      self->busy_ = false;
      if (ec) return self->OnConnectFailed(ec);
      self->stream_->socket().set_option(tcp::no_delay(true), ec);
      self->OnConnected();
    });
  }

  void BeginIo() override { SendNext(); }

  void CloseSocket() override {
    if (!stream_) return;
    error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->socket().close(ignored);
  }

  bool IoPending() const override { return busy_; }

  std::shared_ptr<HttpConnection> Self() {
    return std::static_pointer_cast<HttpConnection>(shared_from_this());
  }

  void SendNext() {
    if (!Sending()) {
      CloseSocket();
      return Finish();
    }
    req_ = {};
    req_.method(http::verb::post);
    req_.target(shared_.target);
    req_.version(11);
    req_.set(http::field::host, shared_.host_header);
    req_.set(http::field::user_agent, "nucleon_load");
    req_.set(http::field::content_type, "application/json");
    req_.keep_alive(true);
    NextBatch(req_.body());
    req_.prepare_payload();
    stream_->expires_at(shared_.timeline.drain_end);
    busy_ = true;
    http::async_write(*stream_, req_, [self = Self()](error_code ec, size_t) {
      if (ec) {
        self->busy_ = false;
        return self->OnIoError(ec, "write");
      }
      self->res_ = {};
      http::async_read(*self->stream_, self->buffer_, self->res_,
                       [self](error_code ec, size_t) { self->OnResponse(ec); });
    });
  }

  void OnResponse(error_code ec) {
    busy_ = false;
    if (ec || Dead()) return OnIoError(ec ? ec : asio::error::operation_aborted, "read");
    const unsigned status = res_.result_int();
    bool backoff = false;
    if (status == 200) {
      OnAck(res_.body());
    } else {
      stats_.Error("http " + std::to_string(status), res_.body());
      stats_.events_rejected += EventsInFlight();
      in_flight_.clear();
      backoff = status == 429 || status == 503;
    }
    if (!res_.keep_alive()) {
      // The server closed the connection: not a failure, open a new one.
      CloseSocket();
      if (!Sending()) return Finish();
      ++stats_.reconnects;
      return Connect();
    }
    if (backoff && Sending()) {
      retry_timer_.expires_after(kBusyBackoff);
      retry_timer_.async_wait([self = Self()](error_code ec) {
        if (!ec) self->SendNext();
      });
      return;
    }
    SendNext();
  }

  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  bool busy_ = false;
};

// WebSocket: one read loop, plus writes whenever fewer than --pipeline
// messages wait for their acks.
class WsConnection final : public Connection {
 public:
  using Connection::Connection;

 private:
  using Stream = websocket::stream<beast::tcp_stream>;

  void Connect() override {
    ws_.emplace(ioc_);
    rbuf_.clear();  // a failed read may have left part of a message behind
    auto& tcp_layer = beast::get_lowest_layer(*ws_);
    tcp_layer.expires_after(kConnectTimeout);
    connecting_ = true;
    tcp_layer.async_connect(shared_.endpoint, [self = Self()](error_code ec) {
      if (ec) {
        self->connecting_ = false;
        return self->OnConnectFailed(ec);
      }
      beast::get_lowest_layer(*self->ws_).socket().set_option(tcp::no_delay(true), ec);
      self->Handshake();
    });
  }

  void Handshake() {
    beast::get_lowest_layer(*ws_).expires_never();
    websocket::stream_base::timeout timeouts =
        websocket::stream_base::timeout::suggested(beast::role_type::client);
    timeouts.handshake_timeout = kConnectTimeout;
    ws_->set_option(timeouts);
    ws_->set_option(websocket::stream_base::decorator(
        [](websocket::request_type& req) { req.set(http::field::user_agent, "nucleon_load"); }));
    if (opt_.deflate) {
      websocket::permessage_deflate pmd;
      pmd.client_enable = true;
      ws_->set_option(pmd);
    }
    ws_->text(true);
    ws_->async_handshake(shared_.host_header, shared_.target, [self = Self()](error_code ec) {
      self->connecting_ = false;
      if (ec) return self->OnConnectFailed(ec);
      self->OnConnected();
    });
  }

  void BeginIo() override {
    Read();
    Pump();
  }

  void CloseSocket() override {
    if (!ws_) return;
    error_code ignored;
    auto& socket = beast::get_lowest_layer(*ws_).socket();
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }

  bool IoPending() const override { return reading_ || writing_ || closing_ || connecting_; }

  std::shared_ptr<WsConnection> Self() {
    return std::static_pointer_cast<WsConnection>(shared_from_this());
  }

  void Read() {
    reading_ = true;
    ws_->async_read(rbuf_, [self = Self()](error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(error_code ec) {
    reading_ = false;
    // After a failure the batches are written off already; a late answer that
    // was still in the socket is dropped with them.
    if (ec || Dead()) return OnIoError(ec ? ec : asio::error::operation_aborted, "read");
    const auto data = rbuf_.cdata();
    OnAck(std::string_view(static_cast<const char*>(data.data()), data.size()));
    rbuf_.consume(rbuf_.size());
    Pump();
    if (!Sending() && in_flight_.empty()) {
      if (!writing_) Close();
      return;  // OnWrite closes once its write is done
    }
    Read();
  }

  void Pump() {
    if (writing_ || failed_ || closing_ || !Sending()) return;
    if (in_flight_.size() >= static_cast<size_t>(opt_.pipeline)) return;
    NextBatch(wbuf_);
    writing_ = true;
    ws_->async_write(asio::buffer(wbuf_), [self = Self()](error_code ec, size_t) {
      self->writing_ = false;
      if (ec || self->Dead()) {
        return self->OnIoError(ec ? ec : asio::error::operation_aborted, "write");
      }
      if (!self->Sending() && self->in_flight_.empty() && !self->reading_) return self->Close();
      self->Pump();
    });
  }

  void Close() {
    if (closing_ || failed_) return;
    closing_ = true;
    ws_->async_close(websocket::close_code::normal, [self = Self()](error_code ec) {
      self->closing_ = false;
      if (ec && !self->drain_expired_) self->stats_.Error("close: " + ec.message());
      self->CloseSocket();
      self->Finish();
    });
  }

  std::optional<Stream> ws_;
  beast::flat_buffer rbuf_;
  std::string wbuf_;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool connecting_ = false;
};

// ---------------------------------------------------------------- main

[[noreturn]] void Usage(const std::string& problem) {
  if (!problem.empty()) std::cerr << "nucleon_load: " << problem << "\n";
  std::cerr <<
      R"(usage: nucleon_load --target 127.0.0.1:PORT --app APP_ID [options]
  --mode http|ws       transport (default http)
  --connections N      concurrent connections (default 8)
  --batch N            events per message (default 50)
  --pipeline K         ws: unacked messages per connection (default 4; http: always 1)
  --seconds S          measured time (default 10)
  --warmup S           unmeasured time before it (default 1)
  --drain S            wait at most this long for the last acks (default 5)
  --devices D          simulated devices (default 1000)
  --threads T          client io threads (default 1)
  --deflate            ws: offer permessage-deflate, as the SDKs do (default off)
  --seed N             event generator seed (default random)
)";
  std::exit(2);
}

template <typename T>
T ParseNumber(const std::string& flag, const std::string& value, T lo, T hi) {
  T v{};
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size() || v < lo || v > hi)
    Usage("bad value for " + flag + ": " + value);
  return v;
}

Options ParseOptions(int argc, char** argv) {
  Options opt;
  opt.seed = std::random_device{}() * 0x100000001ULL ^ static_cast<uint64_t>(NowMillis());
  std::string target;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::string value;
    if (flag == "-h" || flag == "--help") Usage("");
    if (flag == "--deflate") {
      opt.deflate = true;
      continue;
    }
    if (auto eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Usage("missing value for " + flag);
    }
    if (flag == "--target") {
      target = value;
    } else if (flag == "--app") {
      opt.app = value;
    } else if (flag == "--mode") {
      if (value != "http" && value != "ws") Usage("--mode is http or ws");
      opt.mode = value == "http" ? Mode::kHttp : Mode::kWs;
    } else if (flag == "--connections") {
      opt.connections = ParseNumber(flag, value, 1, 10000);
    } else if (flag == "--batch") {
      opt.batch = ParseNumber(flag, value, 1, 100000);
    } else if (flag == "--pipeline") {
      opt.pipeline = ParseNumber(flag, value, 1, 10000);
    } else if (flag == "--seconds") {
      opt.seconds = ParseNumber(flag, value, 0.1, 86400.0);
    } else if (flag == "--warmup") {
      opt.warmup = ParseNumber(flag, value, 0.0, 3600.0);
    } else if (flag == "--drain") {
      opt.drain = ParseNumber(flag, value, 0.1, 3600.0);
    } else if (flag == "--devices") {
      opt.devices = ParseNumber(flag, value, 1, 10'000'000);
    } else if (flag == "--threads") {
      opt.threads = ParseNumber(flag, value, 1, 256);
    } else if (flag == "--seed") {
      opt.seed = ParseNumber(flag, value, uint64_t{0}, ~uint64_t{0});
    } else {
      Usage("unknown flag " + flag);
    }
  }
  if (target.empty() || opt.app.empty()) Usage("--target and --app are required");
  const auto colon = target.rfind(':');
  if (colon == std::string::npos) Usage("--target is HOST:PORT");
  opt.host = target.substr(0, colon);
  opt.port = ParseNumber<uint16_t>("--target port", target.substr(colon + 1), 1, 65535);
  if (opt.mode == Mode::kHttp) opt.pipeline = 1;
  if (static_cast<uint64_t>(opt.pipeline) * opt.batch * 4 > kIdSpace)
    Usage("--pipeline x --batch too large for the 1..1e6 id space");
  return opt;
}

double Percentile(std::vector<float>& v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

int Run(const Options& opt) {
  error_code ec;
  const auto address = asio::ip::make_address(opt.host, ec);
  if (ec) {
    std::cerr << "nucleon_load: --target host must be an IP address, got " << opt.host << "\n";
    return 2;
  }
  const std::vector<Device> devices = MakeDevices(opt.devices, opt.seed);
  const std::vector<uint8_t> name_table = MakeNameTable();
  Rng seeder(opt.seed);
  Shared shared(opt, tcp::endpoint(address, opt.port), devices, name_table,
                100000 + seeder.Next() % 800000);

  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (int t = 0; t < opt.threads; ++t) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    guards.push_back(asio::make_work_guard(*contexts.back()));
  }

  // Devices are dealt out round-robin; with fewer devices than connections
  // some connections share a device (sessions still never collide).
  std::vector<std::shared_ptr<Connection>> connections;
  for (int i = 0; i < opt.connections; ++i) {
    std::vector<uint32_t> mine;
    for (int d = i; d < opt.devices; d += opt.connections) mine.push_back(d);
    if (mine.empty()) mine.push_back(static_cast<uint32_t>(i % opt.devices));
    asio::io_context& ioc = *contexts[i % opt.threads];
    if (opt.mode == Mode::kHttp) {
      connections.push_back(
          std::make_shared<HttpConnection>(ioc, shared, std::move(mine), seeder.Next()));
    } else {
      connections.push_back(
          std::make_shared<WsConnection>(ioc, shared, std::move(mine), seeder.Next()));
    }
  }

  std::vector<std::thread> threads;
  for (auto& ioc : contexts) threads.emplace_back([&ioc] { ioc->run(); });
  for (auto& c : connections) c->Open();

  int started = 0;
  {
    std::unique_lock lock(shared.mu);
    shared.cv.wait_for(lock, kConnectTimeout + std::chrono::seconds(1),
                       [&] { return shared.connected + shared.connect_failed >= opt.connections; });
    started = shared.connected;
  }
  const auto to_duration = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  if (started > 0) {
    const Clock::time_point now = Clock::now();
    shared.timeline.begin = now + to_duration(opt.warmup);
    shared.timeline.end = shared.timeline.begin + to_duration(opt.seconds);
    shared.timeline.drain_end = shared.timeline.end + to_duration(opt.drain);
    // Start only what connected in time; a late connection stays idle.
    started = 0;
    for (auto& c : connections) {
      if (!c->ready()) continue;
      c->Start();
      ++started;
    }
    std::unique_lock lock(shared.mu);
    shared.cv.wait_until(lock, shared.timeline.drain_end + std::chrono::seconds(2),
                         [&] { return shared.finished >= started; });
  }
  const bool all_finished = [&] {
    std::lock_guard lock(shared.mu);
    return shared.finished >= started;
  }();
  guards.clear();
  for (auto& ioc : contexts) ioc->stop();
  for (auto& t : threads) t.join();

  Stats total;
  for (auto& c : connections) {
    c->AbandonInFlight();
    total.Merge(c->stats());
  }
  const double p50 = Percentile(total.ack_ms, 0.50);
  const double p99 = Percentile(total.ack_ms, 0.99);
  const double rate = total.events_acked_window / opt.seconds;
  const uint64_t unacked = total.events_missing + total.events_lost + total.events_unacked_end;
  uint64_t error_count = 0;
  for (const auto& [k, v] : total.errors) error_count += v;

  const char* mode = opt.mode == Mode::kHttp ? "http" : "ws";
  std::string json = "{\"mode\":\"";
  json += mode;
  json += "\",\"connections\":" + std::to_string(opt.connections);
  json += ",\"batch\":" + std::to_string(opt.batch);
  json += ",\"seconds\":" + Fixed(opt.seconds, 3);
  json += ",\"events_acked\":" + std::to_string(total.events_acked_window);
  json += ",\"events_per_sec\":" + Fixed(rate, 1);
  json += ",\"p50_ack_ms\":" + Fixed(p50, 3);
  json += ",\"p99_ack_ms\":" + Fixed(p99, 3);
  json += ",\"pipeline\":" + std::to_string(opt.pipeline);
  json += ",\"connections_ok\":" + std::to_string(started);
  json += ",\"events_sent\":" + std::to_string(total.events_sent);
  json += ",\"events_acked_total\":" + std::to_string(total.events_acked_total);
  json += ",\"events_unacked\":" + std::to_string(unacked);
  json += ",\"max_ack_ms\":" + Fixed(total.max_ack_ms, 3);
  json += ",\"errors\":{";
  bool first = true;
  for (const auto& [k, v] : total.errors) {
    json += (first ? "" : ",") + JsonString(k) + ":" + std::to_string(v);
    first = false;
  }
  json += "}}";
  std::cout << json << std::endl;

  std::cerr << "nucleon_load " << mode << ": " << Fixed(rate, 0) << " events/s acked ("
            << total.events_acked_window << " in " << Fixed(opt.seconds, 1) << " s; " << started
            << "/" << opt.connections << " connections, batch " << opt.batch << ", pipeline "
            << opt.pipeline << "); ack p50 " << Fixed(p50, 2) << " ms, p99 " << Fixed(p99, 2)
            << " ms, max " << Fixed(total.max_ack_ms, 1) << " ms\n";
  if (unacked || total.duplicate_ids || total.unexpected_ids || total.empty_acks ||
      total.events_rejected || total.reconnects) {
    std::cerr << "nucleon_load: sent " << total.events_sent << ", acked "
              << total.events_acked_total << "; missing from answers " << total.events_missing
              << ", lost with a connection " << total.events_lost << ", unacked at the end "
              << total.events_unacked_end << ", rejected " << total.events_rejected
              << "; duplicate ids " << total.duplicate_ids << ", unexpected ids "
              << total.unexpected_ids << ", empty acks " << total.empty_acks << ", reconnects "
              << total.reconnects << "\n";
  }
  for (const auto& [k, v] : total.errors) {
    std::cerr << "nucleon_load: error x" << v << ": " << k;
    if (auto it = total.error_samples.find(k); it != total.error_samples.end())
      std::cerr << " -- " << it->second;
    std::cerr << "\n";
  }
  if (!all_finished) std::cerr << "nucleon_load: some connections did not finish in time\n";
  if (started == 0) {
    std::cerr << "nucleon_load: no connection could be opened\n";
    return 1;
  }
  return total.events_acked_window > 0 ? 0 : 1;
}

}  // namespace
}  // namespace nucleon

int main(int argc, char** argv) {
  try {
    return nucleon::Run(nucleon::ParseOptions(argc, argv));
  } catch (const std::exception& e) {
    std::cerr << "nucleon_load: " << e.what() << "\n";
    return 1;
  }
}
