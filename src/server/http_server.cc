#include "server/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>
#include <vector>

#include "core/log.h"

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

struct Context {
  HttpServerOptions options;
  Router* router;
  Ingestor* ingestor;
  PresenceSink* presence;
};

// The country of the request's client: the socket peer, or what a trusted
// proxy says it forwarded for. Only the two-letter code leaves this function.
std::string ClientCountry(const Context& ctx, const tcp::socket& socket,
                          const http::request<http::string_body>& req) {
  if (!ctx.options.geo) return {};
  beast::error_code ec;
  const auto endpoint = socket.remote_endpoint(ec);
  if (ec) return {};
  const net::ip::address a = endpoint.address();
  IpAddress peer = a.is_v4() ? IpAddress::V4(a.to_v4().to_bytes()) : IpAddress::V6(a.to_v6().to_bytes());
  std::string forwarded;
  if (!ctx.options.trusted_proxies.empty()) {
    // Several X-Forwarded-For lines are one list, in order.
    auto range = req.equal_range("X-Forwarded-For");
    for (auto it = range.first; it != range.second; ++it) {
      if (!forwarded.empty()) forwarded += ',';
      forwarded.append(it->value());
    }
  }
  std::string_view real_ip;
  if (!ctx.options.trusted_proxies.empty()) {
    auto it = req.find("X-Real-IP");
    if (it != req.end()) real_ip = it->value();
  }
  return std::string(ctx.options.geo->Country(
      ClientAddress(peer, forwarded, real_ip, ctx.options.trusted_proxies)));
}

uint64_t NextConnectionId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

class WsSession : public std::enable_shared_from_this<WsSession> {
 public:
  WsSession(tcp::socket&& socket, const Context* ctx, std::string app, std::string country)
      : ws_(std::move(socket)),
        ctx_(ctx),
        app_(std::move(app)),
        country_(std::move(country)),
        id_(NextConnectionId()) {}

  ~WsSession() {
    if (ctx_->presence) ctx_->presence->Closed(id_);
  }

  void Start(http::request<http::string_body> req) {
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    websocket::permessage_deflate pmd;
    pmd.server_enable = true;
    ws_.set_option(pmd);
    // The size limit is enforced in OnRead so that an oversized message ends
    // with a proper close handshake (1009) the client can see, instead of
    // Beast failing the connection while the client is still sending.
    ws_.read_message_max(0);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "nucleon"); }));
    ws_.async_accept(req, beast::bind_front_handler(&WsSession::OnAccept, shared_from_this()));
  }

 private:
  void OnAccept(beast::error_code ec) {
    if (ec) return;
    DoRead();
  }

  void DoRead() {
    if (reading_ || closed_) return;
    reading_ = true;
    ws_.async_read_some(buffer_, 64 * 1024,
                        beast::bind_front_handler(&WsSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    reading_ = false;
    if (ec) {
      closed_ = true;
      return;
    }
    if (buffer_.size() > ctx_->options.max_body_bytes) {
      LogWarn("app " + app_ + ": WebSocket message over the size limit; closing (1009)");
      closed_ = true;
      buffer_.clear();
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
    std::string message = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    ++inflight_;
    g_inflight.fetch_add(1);
    auto self = shared_from_this();
    ctx_->ingestor->Ingest(app_, message, country_, id_, [self](const Status& st, std::string ack) {
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
      LogWarn("app " + app_ + ": message not acked: " + st.message());
    } else if (st.code() == StatusCode::kPayloadTooLarge && !closed_) {
      // Too many events in one message: like an oversized message, close with
      // 1009 so the client sees why instead of waiting for an ack.
      LogWarn("app " + app_ + ": WebSocket message refused, closing (1009): " + st.message());
      closed_ = true;
      ws_.async_close(websocket::close_reason(websocket::close_code::too_big, "too many events"),
                      [self = shared_from_this()](beast::error_code) {});
    } else {
      LogWarn("app " + app_ + ": malformed WebSocket message not acked: " + st.message());
    }
    g_inflight.fetch_sub(1);
    if (!closed_ && inflight_ < ctx_->options.max_inflight_messages_per_socket) DoRead();
  }

  void Send(std::string text) {
    if (closed_) return;
    outbox_.push_back(std::move(text));
    if (outbox_.size() == 1) DoWrite();
  }

  void DoWrite() {
    ws_.text(true);
    ws_.async_write(net::buffer(outbox_.front()),
                    beast::bind_front_handler(&WsSession::OnWrite, shared_from_this()));
  }

  void OnWrite(beast::error_code ec, std::size_t) {
    outbox_.pop_front();
    if (ec) {
      closed_ = true;
      outbox_.clear();
      return;
    }
    if (!outbox_.empty()) DoWrite();
  }

  websocket::stream<beast::tcp_stream> ws_;
  const Context* ctx_;
  std::string app_;
  std::string country_;
  const uint64_t id_;
  beast::flat_buffer buffer_;
  std::deque<std::string> outbox_;
  int inflight_ = 0;
  bool reading_ = false;
  bool closed_ = false;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, const Context* ctx) : stream_(std::move(socket)), ctx_(ctx) {}

  void Start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->body_limit(ctx_->options.max_body_bytes);
    parser_->header_limit(32 * 1024);
    stream_.expires_after(std::chrono::seconds(ctx_->options.header_timeout_seconds));
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream || ec == net::error::eof) {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec == http::error::body_limit) {
      return WriteError(413, "body larger than " + std::to_string(ctx_->options.max_body_bytes) +
                                 " bytes");
    }
    if (ec == http::error::header_limit) return WriteError(431, "request headers too large");
    if (ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset) {
      return;
    }
    if (ec) return WriteError(400, "malformed HTTP request: " + ec.message());

    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    version_ = req.version();
    head_ = req.method() == http::verb::head;

    if (websocket::is_upgrade(req)) {
      auto app = Router::TrackingSocketApp(req.target());
      if (!app) return WriteError(404, "no WebSocket endpoint at " + std::string(req.target()));
      if (!ctx_->router->AppExists(*app)) return WriteError(404, "unknown app " + *app);
      stream_.expires_never();
      std::string country = ClientCountry(*ctx_, stream_.socket(), req);
      std::make_shared<WsSession>(stream_.release_socket(), ctx_, std::move(*app),
                                  std::move(country))
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
    request.country = ClientCountry(*ctx_, stream_.socket(), req);
    request.body = std::move(req.body());
    stream_.expires_never();
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
    res->content_length(r.body.size());
    stream_.expires_after(std::chrono::seconds(30));
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    http::async_write_header(stream_, *sr,
                             [self = shared_from_this(), res, sr, counted](beast::error_code ec,
                                                                          std::size_t) {
                               if (counted) g_inflight.fetch_sub(1);
                               self->OnWrite(ec, res->keep_alive());
                             });
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
  const Context* ctx_;
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
      : ctx_{std::move(options), router, ingestor, presence},
        ioc_(std::max(1, ctx_.options.threads)),
        acceptor_(net::make_strand(ioc_)),
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
    std::vector<std::thread> threads;
    for (int i = 1; i < std::max(1, ctx_.options.threads); ++i) {
      threads.emplace_back([this] { ioc_.run(); });
    }
    ioc_.run();
    for (auto& t : threads) t.join();
    if (stopper_.joinable()) stopper_.join();
  }

  void RequestStop() {
    bool expected = false;
    if (!stopping_.compare_exchange_strong(expected, true)) return;
    net::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
      signals_.cancel(ignored);
    });
    // Drain off the network threads: they must keep running to send the acks.
    stopper_ = std::thread([this] {
      LogInfo("stopping: committing and acknowledging what is in flight");
      if (drain_) drain_();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (g_inflight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      // Give the last writes a moment to leave the socket buffers.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ioc_.stop();
    });
  }

 private:
  void DoAccept() {
    acceptor_.async_accept(net::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
      } else {
        beast::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        std::make_shared<HttpSession>(std::move(socket), &ctx_)->Start();
      }
      DoAccept();
    });
  }

  Context ctx_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
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
