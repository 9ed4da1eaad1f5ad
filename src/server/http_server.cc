#include "server/http_server.h"

#include <sys/resource.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/crypto.h"
#include "core/log.h"
#include "server/connection_limiter.h"

namespace nucleon {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

namespace {

// Work accepted but not yet answered (HTTP requests being processed, WebSocket
// messages waiting for their ack): shutdown waits for it to reach zero.
std::atomic<int64_t> g_inflight{0};
// Streamed answers whose producer thread still runs (it reads the store, so
// the server returns only once there are none), and whether they must stop.
std::atomic<int> g_streams{0};
std::atomic<bool> g_streams_stop{false};

// A streamed body between its producer thread and the connection: at most
// kQueuedChunks pieces wait, so memory stays flat however large the body is.
struct BodyStream {
  static constexpr size_t kQueuedChunks = 4;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> chunks;
  bool done = false;    // the producer returned
  bool failed = false;  // ... with an error, or it was stopped: no last chunk
  bool gone = false;    // the connection ended
  bool idle = false;    // the connection waits for the next piece
};

class WsSession;

// The open tracking WebSockets, so that a stop can close each of them with
// 1001 (going away) once what it sent is acked. A flat array: each session
// knows its place, and the last one moves into a place that is given back.
class WsSessions {
 public:
  // A session's place is read and written under the lock only.
  void Add(WsSession* session, std::weak_ptr<WsSession> weak);
  void Remove(WsSession* session);
  std::vector<std::shared_ptr<WsSession>> Open() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::shared_ptr<WsSession>> out;
    out.reserve(open_.size());
    for (const Slot& slot : open_) {
      if (auto session = slot.weak.lock()) out.push_back(std::move(session));
    }
    return out;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return open_.size();
  }

 private:
  struct Slot {
    // Valid while listed: a session removes itself before it is gone.
    WsSession* session;
    std::weak_ptr<WsSession> weak;
  };
  mutable std::mutex mu_;
  std::vector<Slot> open_;
};

struct Context {
  Context(HttpServerOptions o, Router* r, Ingestor* i, PresenceSink* p)
      : options(std::move(o)),
        router(r),
        ingestor(i),
        presence(p),
        connections(options.max_connections, options.max_connections_per_ip),
        key_salt(RandomBytes(16)) {}

  void Count(std::atomic<uint64_t> ServerCounters::*counter) const {
    if (options.counters) (options.counters->*counter).fetch_add(1, std::memory_order_relaxed);
  }

  HttpServerOptions options;
  Router* router;
  Ingestor* ingestor;
  PresenceSink* presence;
  // The app id a tracking socket is for, one string per app rather than one
  // per socket; the apps are few, and their ids stay for the process's life.
  const std::string& AppId(std::string_view app) const {
    std::lock_guard<std::mutex> lock(apps_mu);
    return *apps.emplace(app).first;
  }

  ConnectionLimiter connections;
  mutable WsSessions sessions;
  mutable std::mutex apps_mu;
  mutable std::unordered_set<std::string> apps;
  std::atomic<bool> stopping{false};  // set before the open sockets are told to go away
  // Client addresses become keys through a hash salted per process, so that
  // not even the limiters' memory holds an address in the clear.
  const std::string key_salt;
};

std::optional<IpAddress> PeerAddress(const tcp::socket& socket) {
  beast::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return std::nullopt;
  const net::ip::address a = endpoint.address();
  return a.is_v4() ? IpAddress::V4(a.to_v4().to_bytes()) : IpAddress::V6(a.to_v6().to_bytes());
}

// The opaque key of a client address for the limiters.
std::string AddressKey(const Context& ctx, const IpAddress& address) {
  std::string material = ctx.key_salt;
  material += address.v6 ? '6' : '4';
  material.append(reinterpret_cast<const char*>(address.bytes.data()), address.bytes.size());
  const Sha256Digest digest = Sha256(material);
  return std::string(reinterpret_cast<const char*>(digest.data()), 16);
}

// The request's client: the socket peer, or what a trusted proxy says it
// forwarded for.
IpAddress RequestClient(const Context& ctx, const IpAddress& peer,
                        const http::request<http::string_body>& req) {
  if (ctx.options.trusted_proxies.empty()) return peer;
  // Several X-Forwarded-For lines are one list, in order.
  std::string forwarded;
  auto range = req.equal_range("X-Forwarded-For");
  for (auto it = range.first; it != range.second; ++it) {
    if (!forwarded.empty()) forwarded += ',';
    forwarded.append(it->value());
  }
  std::string_view real_ip;
  auto it = req.find("X-Real-IP");
  if (it != req.end()) real_ip = it->value();
  return ClientAddress(peer, forwarded, real_ip, ctx.options.trusted_proxies);
}

// The country of an address; only the two-letter code leaves this function.
std::string_view CountryOf(const Context& ctx, const IpAddress& client) {
  if (!ctx.options.geo) return {};
  return ctx.options.geo->Country(client);
}

// The WebSocket write buffer: for a compressed message, and for any other.
constexpr size_t kWsWriteBufferBytes = 512;
constexpr size_t kWsSmallWriteBufferBytes = 8;

uint64_t NextConnectionId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, const Context* ctx, const std::string& app,
            std::string_view country, ConnectionLimiter::Lease lease)
      : ws_(std::move(socket)),
        ctx_(ctx),
        app_(&app),
        id_(NextConnectionId()),
        lease_(std::move(lease)),
        country_(CountryCodeId(country)) {}

  ~WsSession() {
    if (listed_) ctx_->sessions.Remove(this);
    if (ctx_->presence) ctx_->presence->Closed(id_);
  }

  // Where the session is listed in WsSessions (under that one's lock).
  uint32_t& place() { return place_; }

  void Start(http::request<http::string_body> req) {
    ctx_->sessions.Add(this, weak_from_this());
    listed_ = true;
    going_away_ = ctx_->stopping.load();
    // Without keep-alive pings the idle timer restarts only when a read starts,
    // that is after each message: a socket that sends nothing (not even the
    // SDK's heartbeat) is closed, whatever pongs its library would answer.
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
    timeouts.keep_alive_pings = false;
    timeouts.idle_timeout = ctx_->options.ws_idle_timeout_seconds > 0
                                ? std::chrono::seconds(ctx_->options.ws_idle_timeout_seconds)
                                : websocket::stream_base::none();
    ws_.set_option(timeouts);
    const HttpServerOptions& o = ctx_->options;
    websocket::permessage_deflate pmd;
    pmd.server_enable = o.ws_deflate;
    pmd.server_max_window_bits = o.ws_deflate_window_bits;
    pmd.client_max_window_bits = o.ws_deflate_window_bits;
    pmd.memLevel = o.ws_deflate_mem_level;
    pmd.msg_size_threshold = o.ws_deflate_min_size;
    ws_.set_option(pmd);
    // A message sent uncompressed goes as one frame; the write buffer holds
    // compressed output only, and is sized per message (DoWrite).
    ws_.auto_fragment(false);
    // The size limit is enforced in OnRead so that an oversized message ends
    // with a proper close handshake (1009) the client can see, instead of
    // Beast failing the connection while the client is still sending.
    ws_.read_message_max(0);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "nucleon"); }));
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

  // The server is stopping: once every message read so far is acked (or
  // refused), close with 1001 so that the client reconnects to the next
  // process at once and sends again whatever was not acked.
  void GoAway() {
    net::dispatch(ws_.get_executor(), [self = shared_from_this()] {
      self->going_away_ = true;
      self->MaybeCloseGoingAway();
    });
  }

 private:
  void OnAccept(beast::error_code ec) {
    if (ec) return;
    accepted_ = true;
    if (going_away_) return MaybeCloseGoingAway();
    DoRead();
  }

  void MaybeCloseGoingAway() {
    if (!going_away_ || !accepted_ || closed_ || inflight_ > 0 || writing_ ||
        (io_ && !io_->outbox.empty())) {
      return;
    }
    closed_ = true;
    if (resume_) resume_->cancel();
    ws_.async_close(websocket::close_reason(websocket::close_code::going_away, "server stopping"),
                    [self = shared_from_this()](beast::error_code) {});
  }

  void DoRead() {
    // Going away: what was read is acked, nothing more is read.
    if (reading_ || closed_ || backing_off_ || going_away_) return;
    reading_ = true;
    if (!io_ || io_->buffer.size() == 0) {
      // Between messages no buffer waits: the first byte of the next one is
      // read into the session itself (Beast keeps the frame in its own read
      // buffer meanwhile), so an idle socket holds no message buffer.
      ws_.async_read_some(net::buffer(&first_byte_, 1),
                          beast::bind_front_handler(&WsSession::OnFirstByte, shared_from_this()));
      return;
    }
    ws_.async_read_some(io_->buffer, 64 * 1024,
                        beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnFirstByte(beast::error_code ec, std::size_t n) {
    if (!ec && n > 0) {
      beast::flat_buffer& buffer = EnsureIo().buffer;
      buffer.commit(net::buffer_copy(buffer.prepare(n), net::buffer(&first_byte_, n)));
    }
    OnRead(ec, n);
  }

  void OnRead(beast::error_code ec, std::size_t) {
    reading_ = false;
    if (ec) {
      if (ec == beast::error::timeout) ctx_->Count(&ServerCounters::websockets_idle_closed);
      closed_ = true;
      if (resume_) resume_->cancel();
      return;
    }
    if (closed_) {
      // A message that was on its way when this side began to close (going
      // away, or a refusal): it could not be acked any more, so it is not
      // stored either; the SDK sends it again to the next connection.
      DropMessage();
      return;
    }
    if (io_ && io_->buffer.size() > ctx_->options.max_body_bytes) {
      LogWarn("app " + *app_ + ": WebSocket message over the size limit; closing (1009)");
      closed_ = true;
      DropMessage();
      // async_close sends the close frame, then drains the rest of the
      // message until the client's close frame arrives.
      ws_.async_close(websocket::close_reason(websocket::close_code::too_big, "message too big"),
                      [self = shared_from_this()](beast::error_code) {});
      return;
    }
    if (!ws_.is_message_done()) {
      DoRead();
      return;
    }
    std::string message = io_ ? beast::buffers_to_string(io_->buffer.data()) : std::string();
    DropMessage();
    ++inflight_;
    g_inflight.fetch_add(1);
    auto self = shared_from_this();
    ctx_->ingestor->Ingest(
        *app_, message, CountryCodeName(country_), id_, [self](const Status& st, std::string ack) {
          net::post(self->ws_.get_executor(), [self, st, ack = std::move(ack)]() mutable {
            self->OnIngested(st, std::move(ack));
          });
        });
    if (inflight_ < ctx_->options.max_inflight_messages_per_socket) DoRead();
  }

  void OnIngested(const Status& st, std::string ack) {
    --inflight_;
    if (st.ok()) {
      Send(std::move(ack));
    } else if (st.code() == StatusCode::kUnavailable) {
      // Not durable: no ack, so the SDK keeps the events and sends them again.
      // Storage is behind: stop reading this socket for a moment instead of
      // decoding more messages that would be refused too.
      if (!backing_off_) {
        LogWarn("app " + *app_ + ": message not acked: " + st.message());
        backing_off_ = true;
        if (!resume_) resume_ = std::make_unique<net::steady_timer>(ws_.get_executor());
        resume_->expires_after(std::chrono::seconds(1));
        resume_->async_wait([self = shared_from_this()](beast::error_code wait_ec) {
          self->backing_off_ = false;
          if (!wait_ec) self->DoRead();
        });
      }
    } else if (st.code() == StatusCode::kPayloadTooLarge && !closed_) {
      // Too many events in one message: like an oversized message, close with
      // 1009 so the client sees why instead of waiting for an ack.
      LogWarn("app " + *app_ + ": WebSocket message refused, closing (1009): " + st.message());
      closed_ = true;
      ws_.async_close(websocket::close_reason(websocket::close_code::too_big, "too many events"),
                      [self = shared_from_this()](beast::error_code) {});
    } else {
      LogWarn("app " + *app_ + ": malformed WebSocket message not acked: " + st.message());
    }
    g_inflight.fetch_sub(1);
    if (!closed_ && inflight_ < ctx_->options.max_inflight_messages_per_socket) DoRead();
    MaybeCloseGoingAway();
  }

  void Send(std::string text) {
    if (closed_) return;
    EnsureIo().outbox.push_back(std::move(text));
    if (!writing_) DoWrite();
  }

  void DoWrite() {
    writing_ = true;
    std::vector<std::string>& outbox = io_->outbox;
    io_->sending = std::move(outbox.front());
    outbox.erase(outbox.begin());
    const std::string& sending = io_->sending;
    ws_.text(true);
    // With deflate negotiated Beast keeps a write buffer of the configured
    // size from the first message on. Only a compressed message (an ack over
    // the threshold, rare) uses it, a frame at a time: 512 bytes then, and the
    // smallest size allowed otherwise, so a socket whose acks are small holds
    // 8 bytes instead of 512.
    ws_.write_buffer_bytes(sending.size() >= ctx_->options.ws_deflate_min_size
                               ? kWsWriteBufferBytes
                               : kWsSmallWriteBufferBytes);
    ws_.async_write(net::buffer(sending),
                    beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, std::size_t) {
    writing_ = false;
    if (ec) {
      closed_ = true;
      io_->outbox.clear();
    }
    if (!io_->outbox.empty()) return DoWrite();
    io_->sending = std::string();
    ReleaseIdleIo();
    if (!ec) MaybeCloseGoingAway();
  }

  // What a socket holds only while a message is read or an ack is due: made
  // for the first, given back once both are done, so that an idle socket
  // holds neither.
  struct Io {
    beast::flat_buffer buffer;  // the message being read
    // Acks waiting to be written, oldest first (a vector: an empty deque
    // already holds half a KiB, and a socket rarely has more than one ack
    // due), and the one being written.
    std::vector<std::string> outbox;
    std::string sending;
  };
  Io& EnsureIo() {
    if (!io_) io_ = std::make_unique<Io>();
    return *io_;
  }
  // The message read so far is done with: its buffer goes.
  void DropMessage() {
    if (!io_) return;
    io_->buffer = beast::flat_buffer();
    ReleaseIdleIo();
  }
  void ReleaseIdleIo() {
    if (io_ && !writing_ && io_->buffer.size() == 0 && io_->outbox.empty()) io_.reset();
  }

  // 104 bytes with libstdc++ and Boost 1.81 on x86-64; tens of
  // thousands are open at once, so every member counts.
  websocket::stream<tcp::socket> ws_;
  const Context* ctx_;
  const std::string* app_;  // interned in the context
  const uint64_t id_;
  ConnectionLimiter::Lease lease_;  // this connection's place under the connection caps
  // Ends a back-off while storage is behind; made at a socket's first.
  std::unique_ptr<net::steady_timer> resume_;
  std::unique_ptr<Io> io_;
  int inflight_ = 0;
  uint32_t place_ = 0;      // in ctx_->sessions, while listed_
  const uint16_t country_;  // CountryCodeId of the client's country
  char first_byte_ = 0;     // the first byte of the next message
  bool listed_ : 1 = false;
  bool writing_ : 1 = false;
  bool reading_ : 1 = false;
  bool closed_ : 1 = false;
  bool backing_off_ : 1 = false;
  bool accepted_ : 1 = false;
  bool going_away_ : 1 = false;
};

void WsSessions::Add(WsSession* session, std::weak_ptr<WsSession> weak) {
  std::lock_guard<std::mutex> lock(mu_);
  session->place() = static_cast<uint32_t>(open_.size());
  open_.push_back(Slot{session, std::move(weak)});
}

void WsSessions::Remove(WsSession* session) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint32_t place = session->place();
  if (place + 1 < open_.size()) {
    open_[place] = std::move(open_.back());
    open_[place].session->place() = place;
  }
  open_.pop_back();
}

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, const Context* ctx, std::optional<IpAddress> peer,
              ConnectionLimiter::Lease lease)
      : stream_(std::move(socket)),
        ctx_(ctx),
        peer_(peer),
        lease_(std::move(lease)),
        deadline_(stream_.get_executor()) {}

  void Start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
  }

 private:
  using Clock = std::chrono::steady_clock;

  // The deadlines are a timer of our own rather than the stream's expiry,
  // which would close the socket: a slow request is answered 408 first.
  void ArmDeadline(Clock::time_point when) {
    timed_out_ = false;
    const uint64_t generation = ++deadline_generation_;
    deadline_.expires_at(when);
    deadline_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      if (ec || generation != self->deadline_generation_) return;
      self->timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
  }

  void DisarmDeadline() {
    ++deadline_generation_;
    deadline_.cancel();
  }

  void DoRead() {
    parser_.emplace();
    parser_->body_limit(ctx_->options.max_body_bytes);
    parser_->header_limit(32 * 1024);
    stream_.expires_never();
    if (ctx_->options.header_timeout_seconds > 0) {
      ArmDeadline(Clock::now() + std::chrono::seconds(ctx_->options.header_timeout_seconds));
    }
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&HttpSession::OnHeader, shared_from_this()));
  }

  // Whether `ec` ended the request; answers or closes when it did.
  bool Failed(beast::error_code ec, bool in_body) {
    if (!ec) return false;
    if (timed_out_) {
      // An idle keep-alive connection (nothing of a next request) just closes.
      if (!in_body && buffer_.size() == 0 && !parser_->got_some()) {
        beast::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        return true;
      }
      ctx_->Count(&ServerCounters::slow_requests_closed);
      if (in_body) {
        WriteError(408, "request body arrived slower than " +
                            std::to_string(ctx_->options.body_min_bytes_per_second) + " bytes/s");
      } else {
        WriteError(408, "request header not received within " +
                            std::to_string(ctx_->options.header_timeout_seconds) + " s");
      }
      return true;
    }
    DisarmDeadline();
    if (ec == http::error::end_of_stream || ec == net::error::eof) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return true;
    }
    if (ec == http::error::body_limit) {
      WriteError(413,
                 "body larger than " + std::to_string(ctx_->options.max_body_bytes) + " bytes");
      return true;
    }
    if (ec == http::error::header_limit) {
      WriteError(431, "request headers too large");
      return true;
    }
    if (ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset) {
      return true;
    }
    WriteError(400, "malformed HTTP request: " + ec.message());
    return true;
  }

  void OnHeader(beast::error_code ec, std::size_t) {
    if (Failed(ec, false)) return;
    if (parser_->is_done()) return OnRequest();
    body_start_ = Clock::now();
    body_bytes_ = 0;
    ReadBody();
  }

  // Minimum body rate: the body gets body_timeout_seconds, plus a second for
  // every body_min_bytes_per_second bytes that did arrive. So a steady slow
  // client is fine and a trickle is cut, without a periodic check.
  void ReadBody() {
    const HttpServerOptions& o = ctx_->options;
    if (o.body_timeout_seconds > 0) {
      auto allowance = std::chrono::duration<double>(o.body_timeout_seconds);
      if (o.body_min_bytes_per_second > 0) {
        allowance += std::chrono::duration<double>(
            static_cast<double>(body_bytes_) / static_cast<double>(o.body_min_bytes_per_second));
      }
      ArmDeadline(body_start_ + std::chrono::duration_cast<Clock::duration>(allowance));
    } else {
      DisarmDeadline();
    }
    http::async_read_some(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&HttpSession::OnBody, shared_from_this()));
  }

  void OnBody(beast::error_code ec, std::size_t n) {
    body_bytes_ += n;
    if (Failed(ec, true)) return;
    if (parser_->is_done()) return OnRequest();
    ReadBody();
  }

  void OnRequest() {
    DisarmDeadline();
    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;

    const std::optional<IpAddress> client =
        peer_ ? std::optional<IpAddress>(RequestClient(*ctx_, *peer_, req)) : std::nullopt;

    if (websocket::is_upgrade(req)) {
      auto app = Router::TrackingSocketApp(req.target());
      if (!app) return WriteError(404, "no WebSocket endpoint at " + std::string(req.target()));
      if (!ctx_->router->AppExists(*app)) return WriteError(404, "unknown app " + *app);
      const std::string_view country = client ? CountryOf(*ctx_, *client) : std::string_view();
      std::make_shared<WsSession>(stream_.release_socket(), ctx_, ctx_->AppId(*app), country,
                                  std::move(lease_))
          ->Start(std::move(req));
      return;
    }

    HttpRequest request;
    request.method = head_ ? "GET" : std::string(req.method_string());
    request.target = std::string(req.target());
    request.headers.reserve(8);
    for (const auto& field : req) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      request.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    if (client) {
      request.country = std::string(CountryOf(*ctx_, *client));
      request.client_key = AddressKey(*ctx_, *client);
    }
    if (peer_ && ctx_->options.trusted_proxies.Contains(*peer_)) {
      request.https = beast::iequals(request.Header("x-forwarded-proto"), "https");
    }
    request.body = std::move(req.body());
    g_inflight.fetch_add(1);
    auto self = shared_from_this();
    ctx_->router->Handle(request, [self](HttpResponse response) {
      net::post(self->stream_.get_executor(), [self, response = std::move(response)]() mutable {
        self->Write(std::move(response), true);
      });
    });
  }

  void WriteError(int status, const std::string& message) {
    HttpResponse r = ErrorResponse(Status(StatusCode::kInvalidArgument, message));
    r.status = status;
    AddCorsHeaders(&r);
    keep_alive_ = false;
    linger_ = true;
    Write(std::move(r), false);
  }

  // Lingering close: after an early answer (413, 400) the client may still be
  // sending its body; closing now would reset the connection and destroy the
  // answer in flight. Stop sending, then read and discard until the client
  // closes, for a bounded time and amount.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::seconds(5));
    DrainSome();
  }

  void DrainSome() {
    if (drained_ > 64 * 1024 * 1024) return;
    drain_buf_.resize(64 * 1024);
    stream_.async_read_some(net::buffer(drain_buf_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->drained_ += n;
                              if (!ec) self->DrainSome();
                            });
  }

  // Status line and headers of `r`, shared by the GET and HEAD answers.
  template <typename Response>
  void SetHead(Response* res, const HttpResponse& r) const {
    res->version(version_);
    res->result(static_cast<http::status>(r.status));
    res->set(http::field::server, "nucleon");
    if (!r.content_type.empty()) res->set(http::field::content_type, r.content_type);
    for (const auto& [k, v] : r.headers) res->set(k, v);
    res->keep_alive(keep_alive_);
  }

  void Write(HttpResponse r, bool counted) {
    if (head_) return WriteHead(std::move(r), counted);
    if (r.stream) return WriteStream(std::move(r), counted);
    auto res = std::make_shared<http::response<http::string_body>>();
    SetHead(res.get(), r);
    res->body() = std::move(r.body);
    res->prepare_payload();
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, counted](beast::error_code ec, std::size_t) {
                        if (counted) g_inflight.fetch_sub(1);
                        self->OnWrite(ec, res->keep_alive());
                      });
  }

  // HEAD: the GET answer's status and headers (its length included), no body.
  void WriteHead(HttpResponse r, bool counted) {
    auto res = std::make_shared<http::response<http::empty_body>>();
    SetHead(res.get(), r);
    if (r.stream) {
      res->chunked(true);
    } else {
      res->content_length(r.body.size());
    }
    stream_.expires_after(std::chrono::seconds(30));
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    http::async_write_header(
        stream_, *sr,
        [self = shared_from_this(), res, sr, counted](beast::error_code ec, std::size_t) {
          if (counted) g_inflight.fetch_sub(1);
          self->OnWrite(ec, res->keep_alive());
        });
  }

  // A streamed answer (HttpResponse::stream): the header, then each piece
  // as a chunk as the producer thread hands it over, then the last chunk.
  void WriteStream(HttpResponse r, bool counted) {
    auto res = std::make_shared<http::response<http::empty_body>>();
    SetHead(res.get(), r);
    res->chunked(true);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    auto state = std::make_shared<BodyStream>();
    // While the connection waits for the producer no operation is pending:
    // this keeps the network threads running (a shutdown's grace included).
    stream_work_.emplace(net::make_work_guard(stream_.get_executor()));
    stream_.expires_after(std::chrono::seconds(30));
    http::async_write_header(
        stream_, *sr,
        [self = shared_from_this(), res, sr, state, counted, produce = std::move(r.stream)](
            beast::error_code ec, std::size_t) mutable {
          if (ec) return self->EndStream(state, counted, /*close=*/true);
          self->StartProducer(state, std::move(produce), counted);
          self->PumpStream(state, counted);
        });
  }

  void StartProducer(const std::shared_ptr<BodyStream>& state,
                     std::function<Status(const BodyWriter&)> produce, bool counted) {
    g_streams.fetch_add(1);
    auto executor = stream_.get_executor();
    auto wake = [self = shared_from_this(), state, counted, executor] {
      net::post(executor, [self, state, counted] { self->PumpStream(state, counted); });
    };
    std::thread([state, produce = std::move(produce), wake] {
      bool refused = false;
      const BodyWriter write = [&](std::string_view chunk) {
        if (chunk.empty()) return true;  // an empty chunk would end the body
        std::unique_lock<std::mutex> lock(state->mu);
        while (state->chunks.size() >= BodyStream::kQueuedChunks && !state->gone &&
               !g_streams_stop.load()) {
          state->cv.wait_for(lock, std::chrono::milliseconds(100));
        }
        if (state->gone || g_streams_stop.load()) {
          refused = true;
          return false;
        }
        state->chunks.emplace_back(chunk);
        if (!state->idle) return true;
        state->idle = false;
        lock.unlock();
        wake();
        return true;
      };
      Status st;
      try {
        st = produce(write);
      } catch (const std::exception& ex) {
        st = Status::Internal(ex.what());
      }
      if (!st.ok()) LogWarn("a streamed answer was cut short: " + st.ToString());
      bool idle = false;
      {
        std::lock_guard<std::mutex> lock(state->mu);
        state->done = true;
        state->failed = !st.ok() || refused;
        idle = state->idle;
        state->idle = false;
      }
      if (idle) wake();
      g_streams.fetch_sub(1);
    }).detach();
  }

  void PumpStream(const std::shared_ptr<BodyStream>& state, bool counted) {
    std::string chunk;
    bool failed = false;
    {
      std::lock_guard<std::mutex> lock(state->mu);
      if (state->gone) return;
      if (!state->chunks.empty()) {
        chunk = std::move(state->chunks.front());
        state->chunks.pop_front();
        state->cv.notify_all();
      } else if (!state->done) {
        state->idle = true;
        return;
      } else {
        failed = state->failed;
      }
    }
    stream_.expires_after(std::chrono::seconds(30));
    if (!chunk.empty()) {
      auto piece = std::make_shared<std::string>(std::move(chunk));
      net::async_write(
          stream_, http::make_chunk(net::buffer(*piece)),
          [self = shared_from_this(), state, piece, counted](beast::error_code ec, std::size_t) {
            if (ec) return self->EndStream(state, counted, /*close=*/true);
            self->PumpStream(state, counted);
          });
      return;
    }
    if (failed) return EndStream(state, counted, /*close=*/true);
    net::async_write(
        stream_, http::make_chunk_last(),
        [self = shared_from_this(), state, counted](beast::error_code ec, std::size_t) {
          self->EndStream(state, counted, /*close=*/false);
          self->OnWrite(ec, self->keep_alive_);
        });
  }

  // The answer ends (sent, failed, or the client went away); an incomplete
  // one closes the connection so that the client sees it cut.
  void EndStream(const std::shared_ptr<BodyStream>& state, bool counted, bool close) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      if (state->gone) return;
      state->gone = true;
    }
    state->cv.notify_all();
    stream_work_.reset();
    if (counted) g_inflight.fetch_sub(1);
    if (close) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_.socket().close(ignored);
    }
  }

  void OnWrite(beast::error_code ec, bool keep_alive) {
    if (ec) return;
    if (linger_) return Linger();
    if (!keep_alive) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    DoRead();
  }

  beast::tcp_stream stream_;
  std::optional<net::executor_work_guard<beast::tcp_stream::executor_type>> stream_work_;
  const Context* ctx_;
  const std::optional<IpAddress> peer_;
  ConnectionLimiter::Lease lease_;  // this connection's place under the connection caps
  net::steady_timer deadline_;
  uint64_t deadline_generation_ = 0;
  bool timed_out_ = false;
  Clock::time_point body_start_;
  size_t body_bytes_ = 0;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  bool linger_ = false;
  bool head_ = false;
  size_t drained_ = 0;
  std::vector<char> drain_buf_;
  unsigned version_ = 11;
};

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, Router* router, Ingestor* ingestor, PresenceSink* presence)
      : ctx_(WithinFileLimit(std::move(options)), router, ingestor, presence),
        ioc_(std::max(1, ctx_.options.threads)),
        acceptor_(net::make_strand(ioc_)),
        accept_retry_(acceptor_.get_executor()),
        signals_(ioc_, SIGINT, SIGTERM) {}

  Result<uint16_t> Listen() {
    beast::error_code ec;
    auto address = net::ip::make_address(ctx_.options.host, ec);
    if (ec) return Status::InvalidArgument("bad listen address " + ctx_.options.host);
    tcp::endpoint endpoint(address, ctx_.options.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + ctx_.options.host + ":" +
                                 std::to_string(ctx_.options.port) + ": " + ec.message());
    }
    return acceptor_.local_endpoint().port();
  }

  void Run(const std::function<void()>& drain) {
    signals_.async_wait([this](beast::error_code ec, int) {
      if (!ec) RequestStop();
    });
    DoAccept();
    drain_ = drain;
    g_streams_stop.store(false);
    std::vector<std::thread> threads;
    for (int i = 1; i < std::max(1, ctx_.options.threads); ++i) {
      threads.emplace_back([this] { ioc_.run(); });
    }
    ioc_.run();
    for (auto& t : threads) t.join();
    if (stopper_.joinable()) stopper_.join();
    // A streamed answer's producer reads the store, which outlives only this call.
    g_streams_stop.store(true);
    while (g_streams.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  void RequestStop() {
    bool expected = false;
    if (!stopping_.compare_exchange_strong(expected, true)) return;
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
      signals_.cancel(ignored);
    });
    // Drain off the network threads: they must keep running to send the acks.
    stopper_ = std::thread([this] {
      LogInfo("stopping: committing and acknowledging what is in flight");
      // Tracking sockets read nothing more, and close with 1001 once their
      // last message is acked.
      ctx_.stopping.store(true);
      for (const auto& session : ctx_.sessions.Open()) session->GoAway();
      if (drain_) drain_();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while ((g_inflight.load() > 0 || ctx_.sessions.size() > 0) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      // Streamed answers still going are cut (the client sees them incomplete).
      g_streams_stop.store(true);
      // Give the last writes a moment to leave the socket buffers.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ioc_.stop();
    });
  }

 private:
  // Every connection needs a file descriptor: the connection cap must fit
  // under the process's limit, which is raised to its hard maximum first.
  static HttpServerOptions WithinFileLimit(HttpServerOptions options) {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return options;
    if (limit.rlim_cur < limit.rlim_max) {
      rlimit raised = limit;
      raised.rlim_cur = limit.rlim_max;
      if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    if (limit.rlim_cur == RLIM_INFINITY) return options;
    // Room for the database, the logs and the admin connections.
    const size_t usable = limit.rlim_cur > 128 ? limit.rlim_cur - 128 : 1;
    if (options.max_connections == 0 || options.max_connections > usable) {
      LogInfo("connection cap lowered to " + std::to_string(usable) +
              " to fit the open-file limit of " + std::to_string(limit.rlim_cur));
      options.max_connections = usable;
    }
    return options;
  }

  void DoAccept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [this](beast::error_code ec, tcp::socket socket) {
                             if (ec) {
                               if (ec == net::error::operation_aborted || !acceptor_.is_open())
                                 return;
                               // Out of descriptors or memory: accepting again at once would spin.
                               accept_retry_.expires_after(std::chrono::milliseconds(100));
                               accept_retry_.async_wait([this](beast::error_code wait_ec) {
                                 if (!wait_ec && acceptor_.is_open()) DoAccept();
                               });
                               return;
                             }
                             Admit(std::move(socket));
                             DoAccept();
                           });
  }

  void Admit(tcp::socket socket) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const std::optional<IpAddress> peer = PeerAddress(socket);
    // A trusted proxy speaks for many clients: it counts in the total only.
    std::string key;
    if (peer && !ctx_.options.trusted_proxies.Contains(*peer)) key = AddressKey(ctx_, *peer);
    ConnectionLimiter::Lease lease;
    switch (ctx_.connections.Acquire(key, &lease)) {
      case ConnectionLimiter::Admission::kAdmitted:
        std::make_shared<HttpSession>(std::move(socket), &ctx_, peer, std::move(lease))->Start();
        return;
      case ConnectionLimiter::Admission::kKeyFull:
        ctx_.Count(&ServerCounters::connections_refused);
        return Refuse(std::move(socket), 429, "Too Many Requests",
                      "too many connections from this address");
      case ConnectionLimiter::Admission::kTotalFull:
        ctx_.Count(&ServerCounters::connections_refused);
        return Refuse(std::move(socket), 503, "Service Unavailable",
                      "the server is at its connection limit");
    }
  }

  // A connection over a cap gets a fixed JSON answer without its request
  // being read, then a short lingering close so the answer is not lost to a
  // reset; all bounded to a second.
  static void Refuse(tcp::socket socket, int status, const char* reason, const char* message) {
    const std::string body = std::string("{\"error\":\"") + message + "\"}";
    auto text = std::make_shared<std::string>(
        "HTTP/1.1 " + std::to_string(status) + " " + reason +
        "\r\nServer: nucleon\r\nContent-Type: application/json\r\n"
        "Access-Control-Allow-Origin: *\r\nRetry-After: 1\r\nConnection: close\r\n"
        "Content-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body);
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    stream->expires_after(std::chrono::seconds(1));
    net::async_write(*stream, net::buffer(*text),
                     [stream, text](beast::error_code ec, std::size_t) {
                       if (ec) return;
                       beast::error_code ignored;
                       stream->socket().shutdown(tcp::socket::shutdown_send, ignored);
                       auto sink = std::make_shared<std::array<char, 4096>>();
                       // One read is enough to take what the client sent with its request.
                       stream->async_read_some(net::buffer(*sink),
                                               [stream, sink](beast::error_code, std::size_t) {});
                     });
  }

  Context ctx_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  net::signal_set signals_;
  std::atomic<bool> stopping_{false};
  std::function<void()> drain_;
  std::thread stopper_;
};

HttpServer::HttpServer(HttpServerOptions options, Router* router, Ingestor* ingestor,
                       PresenceSink* presence)
    : impl_(std::make_unique<Impl>(std::move(options), router, ingestor, presence)) {}

HttpServer::~HttpServer() = default;

Result<uint16_t> HttpServer::Listen() { return impl_->Listen(); }

void HttpServer::Run(const std::function<void()>& drain) { impl_->Run(drain); }

void HttpServer::RequestStop() { impl_->RequestStop(); }

}  // namespace nucleon
