#include "store/clickhouse/clickhouse_client.h"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url.hpp>
#include <charconv>
#include <chrono>
#include <exception>
#include <mutex>

namespace nucleon {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// ClickHouse's own default HTTP port, for a URL that names none.
constexpr uint16_t kDefaultPort = 8123;
// Separates the parts of a statement's form (a table sent along).
constexpr std::string_view kFormBoundary = "nucleon-external-table-7c1f";

constexpr char kHex[] = "0123456789ABCDEF";

// One keep-alive connection. Beast's synchronous calls ignore the stream's
// timeouts, so every operation is started asynchronously and this
// connection's own io_context is run until it completes: the calling thread
// blocks as with a synchronous call, and the tcp_stream's timer can still
// close a socket that hangs. A connection is used by one thread at a time.
struct Connection {
  net::io_context ioc{1};
  beast::tcp_stream stream{ioc};
  beast::flat_buffer buffer;

  // Runs the operation just started to its completion handler.
  void Run() {
    ioc.restart();
    ioc.run();
  }

  // Whether the server has closed (or written on) this idle connection:
  // ClickHouse closes keep-alive connections idle for a few seconds, and a
  // connection it has closed is readable (end of stream). A cheap check that
  // saves most of the stale-connection retries; the race it leaves (a close
  // on the way while the request is written) is handled by the retry.
  bool Stale() {
    if (!stream.socket().is_open()) return true;
    pollfd p{};
    p.fd = stream.socket().native_handle();
    p.events = POLLIN | POLLRDHUP;
    return ::poll(&p, 1, 0) != 0;
  }
};

struct Endpoint {
  std::string host;  // as the resolver takes it (an IPv6 address without brackets)
  std::string port;
  std::string display;  // "host:port", for messages and CurrentEndpoint
  bool auth = false;
  std::string user;
  std::string password;

  std::mutex mu;
  std::vector<std::unique_ptr<Connection>> idle;  // newest last
};

// How one request on one connection ended.
enum class Outcome {
  kAnswered,    // a whole response arrived (any HTTP status)
  kNoResponse,  // the connection failed before any byte of a response
  kBroken,      // a timeout, or the connection broke inside the response
};

bool IsUnreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Percent-encodes everything but the unreserved characters. ClickHouse reads
// '+' in a query string as a space, so "SELECT 1+1" must travel as %2B.
void AppendUrlEncoded(std::string* out, std::string_view text) {
  for (char c : text) {
    if (IsUnreserved(c)) {
      out->push_back(c);
    } else {
      const auto b = static_cast<unsigned char>(c);
      out->push_back('%');
      out->push_back(kHex[b >> 4]);
      out->push_back(kHex[b & 0xF]);
    }
  }
}

// The code of a ClickHouse error message ("Code: 279, e.displayText() = ..."), or 0.
int ErrorCode(std::string_view message) {
  constexpr std::string_view kPrefix = "Code: ";
  const size_t at = message.find(kPrefix);
  if (at == std::string_view::npos) return 0;
  int code = 0;
  for (size_t i = at + kPrefix.size(); i < message.size() && message[i] >= '0' && message[i] <= '9';
       ++i) {
    code = code * 10 + (message[i] - '0');
    if (code > 100000) return 0;
  }
  return code;
}

// Errors that say a server or replica ClickHouse needed is unreachable.
bool IsUnavailableCode(int code) {
  switch (code) {
    case 159:  // TIMEOUT_EXCEEDED
    case 209:  // SOCKET_TIMEOUT
    case 210:  // NETWORK_ERROR
    case 225:  // NO_ZOOKEEPER
    case 242:  // TABLE_IS_READ_ONLY
    case 279:  // ALL_CONNECTION_TRIES_FAILED
    case 286:  // UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    case 289:  // REPLICA_IS_NOT_IN_QUORUM
    case 319:  // UNKNOWN_STATUS_OF_INSERT
    case 999:  // KEEPER_EXCEPTION
      return true;
    default:
      return false;
  }
}

void AppendParam(std::string* target, std::string_view name, std::string_view value) {
  if (target->back() != '?') target->push_back('&');
  AppendUrlEncoded(target, name);
  target->push_back('=');
  AppendUrlEncoded(target, value);
}

std::string_view Trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// `text` between two `quote` characters, escaped as ClickHouse's lexer reads
// quoted strings and backquoted names.
std::string Quoted(std::string_view text, char quote) {
  std::string out;
  out.reserve(text.size() + 2);
  out.push_back(quote);
  for (char c : text) {
    const auto b = static_cast<unsigned char>(c);
    if (c == '\\' || c == quote) {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\0') {
      out += "\\0";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      // The other control bytes as \xHH: none travels raw in a statement.
      out += "\\x";
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xF]);
    } else {
      out.push_back(c);  // UTF-8 and any other byte as it is
    }
  }
  out.push_back(quote);
  return out;
}

Result<std::unique_ptr<Endpoint>> ParseEndpoint(const std::string& text) {
  const auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("clickhouse url \"" + text + "\": " + std::string(why));
  };
  auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) return bad(parsed.error().message());
  const boost::urls::url_view u = *parsed;
  if (u.scheme_id() != boost::urls::scheme::http) return bad("only http:// is supported");
  if (u.host_type() == boost::urls::host_type::none || u.encoded_host().empty()) {
    return bad("no host");
  }
  if (u.host_type() == boost::urls::host_type::ipvfuture) return bad("unsupported host");
  if (!u.encoded_path().empty() && u.encoded_path() != "/") return bad("a path is not supported");
  if (u.has_query() || u.has_fragment()) return bad("a query or fragment is not supported");

  auto ep = std::make_unique<Endpoint>();
  uint16_t port = kDefaultPort;
  if (u.has_port()) {
    const std::string_view p = u.port();
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), value);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || value == 0 ||
        value > 65535) {
      return bad("bad port");
    }
    port = static_cast<uint16_t>(value);
  }
  ep->host = u.host_address();
  ep->port = std::to_string(port);
  const bool v6 = u.host_type() == boost::urls::host_type::ipv6;
  ep->display = (v6 ? "[" + ep->host + "]" : ep->host) + ":" + ep->port;
  if (u.has_userinfo()) {
    ep->auth = true;
    ep->user = u.user();
    ep->password = u.password();
  }
  return ep;
}

}  // namespace

struct ClickHouseClient::Impl {
  ClickHouseClientOptions options;
  std::vector<std::unique_ptr<Endpoint>> endpoints;
  // The endpoint of the last success (-1: none yet); the next statement
  // starts there, so a dead first URL costs one refused connect, not one per
  // statement.
  std::atomic<int> current{-1};

  std::unique_ptr<Connection> TakeIdle(Endpoint& ep) {
    std::unique_ptr<Connection> stale;  // closed outside the lock
    std::lock_guard lock(ep.mu);
    while (!ep.idle.empty()) {
      std::unique_ptr<Connection> c = std::move(ep.idle.back());
      ep.idle.pop_back();
      if (!c->Stale()) return c;
      stale = std::move(c);
    }
    return nullptr;
  }

  void GiveBack(Endpoint& ep, std::unique_ptr<Connection> c) {
    std::lock_guard lock(ep.mu);
    if (ep.idle.size() < options.max_idle_connections) ep.idle.push_back(std::move(c));
  }

  // A fresh connection, or the reason there is none.
  std::unique_ptr<Connection> Open(const Endpoint& ep, std::string* error) {
    auto c = std::make_unique<Connection>();
    beast::error_code ec;
    tcp::resolver resolver(c->ioc);
    const auto addresses = resolver.resolve(ep.host, ep.port, ec);
    if (ec) {
      *error = "resolve: " + ec.message();
      return nullptr;
    }
    c->stream.expires_after(std::chrono::milliseconds(options.connect_timeout_ms));
    c->stream.async_connect(addresses, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
    c->Run();
    if (ec) {
      *error = "connect: " + ec.message();
      return nullptr;
    }
    // Requests and answers are small and sequential: no Nagle delay.
    c->stream.socket().set_option(tcp::no_delay(true), ec);
    return c;
  }

  // Writes the request and reads the whole response, both within the
  // request timeout.
  template <typename Request>
  Outcome RoundTrip(Connection& c, const Request& req, http::response<http::string_body>* res,
                    std::string* error) {
    beast::error_code ec;
    c.buffer.consume(c.buffer.size());
    c.stream.expires_after(std::chrono::milliseconds(options.request_timeout_ms));
    http::async_write(c.stream, req, [&](beast::error_code e, size_t) { ec = e; });
    c.Run();
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);  // results are as large as the statement makes them
    if (!ec) {
      http::async_read(c.stream, c.buffer, parser, [&](beast::error_code e, size_t) { ec = e; });
      c.Run();
    }
    c.stream.expires_never();
    if (ec) {
      *error = ec.message();
      if (ec == beast::error::timeout) {
        *error = "no answer within " + std::to_string(options.request_timeout_ms) + " ms";
        return Outcome::kBroken;
      }
      return parser.got_some() ? Outcome::kBroken : Outcome::kNoResponse;
    }
    *res = parser.release();
    return Outcome::kAnswered;
  }

  template <typename Request>
  Result<std::string> Execute(Request& req) {
    const int n = static_cast<int>(endpoints.size());
    const int start = std::max(current.load(std::memory_order_relaxed), 0);
    std::string failures;
    for (int i = 0; i < n; ++i) {
      const int index = (start + i) % n;
      Endpoint& ep = *endpoints[index];
      // Each URL carries its own credentials.
      req.set(http::field::host, ep.display);
      if (ep.auth) {
        req.set("X-ClickHouse-User", ep.user);
        req.set("X-ClickHouse-Key", ep.password);
      } else {
        req.erase("X-ClickHouse-User");
        req.erase("X-ClickHouse-Key");
      }
      http::response<http::string_body> res;
      std::string error;
      Outcome outcome = Outcome::kNoResponse;
      std::unique_ptr<Connection> c = TakeIdle(ep);
      if (c) {
        outcome = RoundTrip(*c, req, &res, &error);
        // A pooled connection the server had closed fails before any answer:
        // the statement did not reach it, so it goes again once on a fresh
        // connection to the same endpoint.
        if (outcome == Outcome::kNoResponse) c.reset();
      }
      if (!c) {
        c = Open(ep, &error);
        if (c) outcome = RoundTrip(*c, req, &res, &error);
      }
      if (!c || outcome == Outcome::kNoResponse) {
        // Refused, unreachable, or dropped before answering: the next endpoint.
        failures += (failures.empty() ? "" : "; ") + ep.display + ": " + error;
        continue;
      }
      if (outcome == Outcome::kBroken) {
        // The statement may be running there; sending it elsewhere too could
        // run it twice, and a timeout would be paid once per endpoint.
        return Status::Unavailable("clickhouse " + ep.display + ": " + error);
      }
      if (res.keep_alive()) GiveBack(ep, std::move(c));
      if (res.result() != http::status::ok) {
        // A server that answers is up: its error is the statement's, and
        // another endpoint would say the same.
        std::string message(Trim(res.body()));
        if (message.empty()) {
          message = "clickhouse " + ep.display + ": HTTP " + std::to_string(res.result_int()) +
                    " " + std::string(res.reason());
        }
        // ClickHouse could not reach its own servers (a shard down, no
        // ZooKeeper, a read-only replica): the deployment is unavailable, not
        // the statement wrong. Said without ClickHouse's text, which names
        // internal addresses.
        if (const int code = ErrorCode(message); IsUnavailableCode(code)) {
          return Status::Unavailable("ClickHouse cannot answer right now (code " +
                                     std::to_string(code) + ")");
        }
        return Status::Internal(std::move(message));
      }
      current.store(index, std::memory_order_relaxed);
      return std::move(res.body());
    }
    return Status::Unavailable("clickhouse unreachable: " + failures);
  }
};

ClickHouseClient::ClickHouseClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClickHouseClient::~ClickHouseClient() = default;

const ClickHouseClientOptions& ClickHouseClient::options() const { return impl_->options; }

Result<std::unique_ptr<ClickHouseClient>> ClickHouseClient::Create(
    ClickHouseClientOptions options) {
  try {
    if (options.urls.empty()) return Status::InvalidArgument("clickhouse: no url");
    auto impl = std::make_unique<Impl>();
    for (const std::string& url : options.urls) {
      auto ep = ParseEndpoint(url);
      if (!ep.ok()) return ep.status();
      impl->endpoints.push_back(std::move(ep).value());
    }
    impl->options = std::move(options);
    return std::unique_ptr<ClickHouseClient>(new ClickHouseClient(std::move(impl)));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("clickhouse client: ") + e.what());
  }
}

Result<std::string> ClickHouseClient::Execute(
    std::string_view sql, std::string_view data,
    const std::vector<std::pair<std::string, std::string>>& settings) {
  return Send(sql, data, nullptr, settings);
}

Result<std::string> ClickHouseClient::ExecuteWithTable(
    std::string_view sql, const Table& table,
    const std::vector<std::pair<std::string, std::string>>& settings) {
  return Send(sql, {}, &table, settings);
}

Result<std::string> ClickHouseClient::Send(
    std::string_view sql, std::string_view data, const Table* table,
    const std::vector<std::pair<std::string, std::string>>& settings) {
  try {
    std::string target = "/?";
    if (!impl_->options.database.empty()) AppendParam(&target, "database", impl_->options.database);
    bool wait_set = false;
    for (const auto& [name, value] : impl_->options.settings) AppendParam(&target, name, value);
    for (const auto& [name, value] : settings) {
      AppendParam(&target, name, value);
      wait_set = wait_set || name == "wait_end_of_query";
    }
    // ClickHouse streams a result as it computes it, so an error met halfway
    // would arrive inside a 200 answer. Buffering the result on the server
    // until the statement has finished makes every error a non-200 status.
    if (!wait_set) AppendParam(&target, "wait_end_of_query", "1");
    // With rows to send, the statement travels in the URL and ClickHouse
    // reads the body as its data; without, the body is the statement (no URL
    // length limit for long SELECTs).
    std::string_view body = sql;
    std::string form;
    if (table) {
      // multipart/form-data with the table as its one file. TabSeparated
      // rows hold no CR (AppendTsv escapes it), so never the boundary.
      AppendParam(&target, "query", sql);
      AppendParam(&target, table->name + "_structure", table->structure);
      AppendParam(&target, table->name + "_format", "TabSeparated");
      form = "--" + std::string(kFormBoundary) + "\r\nContent-Disposition: form-data; name=\"" +
             table->name + "\"; filename=\"" + table->name +
             "\"\r\nContent-Type: application/octet-stream\r\n\r\n";
      form += table->rows;
      form += "\r\n--" + std::string(kFormBoundary) + "--\r\n";
      body = form;
    } else if (!data.empty()) {
      AppendParam(&target, "query", sql);
      body = data;
    }
    // The body is borrowed, not copied: an INSERT's rows can be megabytes.
    http::request<http::span_body<const char>> req{http::verb::post, target, 11};
    req.set(http::field::content_type,
            table ? "multipart/form-data; boundary=" + std::string(kFormBoundary)
                  : std::string("text/plain; charset=UTF-8"));
    req.keep_alive(true);
    req.body() = boost::span<const char>(body.data(), body.size());
    req.prepare_payload();
    return impl_->Execute(req);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("clickhouse client: ") + e.what());
  } catch (...) {
    return Status::Internal("clickhouse client: unknown exception");
  }
}

std::string ClickHouseClient::CurrentEndpoint() const {
  const int i = impl_->current.load(std::memory_order_relaxed);
  return i < 0 ? std::string() : impl_->endpoints[i]->display;
}

std::string SqlQuote(std::string_view text) { return Quoted(text, '\''); }

// Backquoted names are read with the same escapes as string literals.
std::string SqlIdentifier(std::string_view name) { return Quoted(name, '`'); }

void AppendTsv(std::string* out, std::string_view field) {
  // Runs of plain bytes are copied whole: most fields need no escape at all.
  size_t plain = 0;
  for (size_t i = 0; i < field.size(); ++i) {
    const char* escaped;
    switch (field[i]) {
      case '\\':
        escaped = "\\\\";
        break;
      case '\t':
        escaped = "\\t";
        break;
      case '\n':
        escaped = "\\n";
        break;
      case '\r':
        escaped = "\\r";
        break;
      case '\0':
        escaped = "\\0";
        break;
      case '\b':
        escaped = "\\b";
        break;
      case '\f':
        escaped = "\\f";
        break;
      default:
        continue;
    }
    out->append(field.data() + plain, i - plain);
    out->append(escaped, 2);
    plain = i + 1;
  }
  out->append(field.data() + plain, field.size() - plain);
}

Result<std::vector<std::vector<std::string>>> ParseTsv(std::string_view text) {
  std::vector<std::vector<std::string>> rows;
  size_t pos = 0;
  while (pos < text.size()) {
    std::vector<std::string>& row = rows.emplace_back();
    // One field per pass; a row ends at a raw newline (or the end of the text:
    // a last row without its newline is still read).
    while (true) {
      std::string& field = row.emplace_back();
      const size_t field_start = pos;
      bool null_field = false;
      while (pos < text.size() && text[pos] != '\t' && text[pos] != '\n') {
        // A run of plain bytes, copied whole.
        size_t end = pos;
        while (end < text.size() && text[end] != '\t' && text[end] != '\n' && text[end] != '\\') {
          ++end;
        }
        if (end > pos) {
          field.append(text.data() + pos, end - pos);
          pos = end;
          continue;
        }
        ++pos;  // a backslash
        if (pos >= text.size()) {
          return Status::InvalidArgument("tsv: backslash at the end of the text");
        }
        const char e = text[pos++];
        switch (e) {
          case '\\':
            field.push_back('\\');
            break;
          case '\'':
            field.push_back('\'');
            break;
          case 't':
            field.push_back('\t');
            break;
          case 'n':
            field.push_back('\n');
            break;
          case 'r':
            field.push_back('\r');
            break;
          case '0':
            field.push_back('\0');
            break;
          case 'b':
            field.push_back('\b');
            break;
          case 'f':
            field.push_back('\f');
            break;
          case 'N':
            // NULL is the whole field "\N"; inside other text it is no escape.
            if (pos - field_start == 2 &&
                (pos == text.size() || text[pos] == '\t' || text[pos] == '\n')) {
              null_field = true;
              break;
            }
            [[fallthrough]];
          default:
            return Status::InvalidArgument("tsv: unknown escape \\" + std::string(1, e) +
                                           " at byte " + std::to_string(pos - 2));
        }
      }
      if (null_field) field.clear();
      if (pos >= text.size()) break;
      if (text[pos++] == '\n') break;
    }
  }
  return rows;
}

}  // namespace nucleon
