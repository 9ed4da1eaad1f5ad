#include "store/clickhouse/clickhouse_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/clickhouse/testing/clickhouse_server.h"

namespace nucleon {
namespace {

using Rows = std::vector<std::vector<std::string>>;

// Strings that TabSeparated and SQL literals must carry unchanged.
std::vector<std::string> TrickyStrings() {
  return {"",
          "plain",
          "tab\there",
          "new\nline",
          "cr\rlf\r\n",
          "back\\slash",
          "trailing\\",
          "\\N",
          "\\t not a tab",
          "quote's \"double\"",
          "`backquoted`",
          std::string("nul\0byte", 8),
          std::string(1, '\0'),
          "\b\f\v\a",
          "\x01\x1f\x7f",
          "\xc3\xa9t\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
          "\xff\xfe not UTF-8",
          "  spaces  "};
}

// ---- TabSeparated and quoting, without a server ----

TEST(TsvTest, AppendThenParseRoundTrips) {
  const std::vector<std::string> strings = TrickyStrings();
  std::string text;
  Rows expected;
  for (const std::string& s : strings) {
    AppendTsv(&text, s);
    text += '\t';
    AppendTsv(&text, s + "x");
    text += '\n';
    expected.push_back({s, s + "x"});
  }
  auto rows = ParseTsv(text);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, expected);
}

TEST(TsvTest, AppendEscapesExactlyTheDocumentedBytes) {
  std::string out;
  AppendTsv(&out, std::string("a\\b\tc\nd\re\0f\bg\fh'i\vj", 19));
  EXPECT_EQ(out, "a\\\\b\\tc\\nd\\re\\0f\\bg\\fh'i\vj");
}

TEST(TsvTest, ParsesShapes) {
  auto parse = [](std::string_view text) {
    auto rows = ParseTsv(text);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() ? *rows : Rows{{"<error>"}};
  };
  EXPECT_EQ(parse(""), Rows{});
  EXPECT_EQ(parse("\n"), (Rows{{""}}));
  EXPECT_EQ(parse("a\tb\nc\td\n"), (Rows{{"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(parse("a\tb"), (Rows{{"a", "b"}}));  // no final newline
  EXPECT_EQ(parse("a\t\t\n"), (Rows{{"a", "", ""}}));
  // NULL reads as an empty field; an escaped backslash before N is text.
  EXPECT_EQ(parse("\\N\tx\t\\N\n"), (Rows{{"", "x", ""}}));
  EXPECT_EQ(parse("\\\\N\n"), (Rows{{"\\N"}}));
  // ClickHouse writes a quote as \' in TabSeparated output.
  EXPECT_EQ(parse("it\\'s\n"), (Rows{{"it's"}}));
  EXPECT_EQ(parse("\\b\\f\\r\\n\\t\\0\\\\\n"), (Rows{{std::string("\b\f\r\n\t\0\\", 7)}}));
}

TEST(TsvTest, MalformedEscapeIsInvalidArgument) {
  for (std::string_view bad : {"a\\qb\n", "abc\\", "\\Nx\n", "x\\N\n", "\\x41\n", "\\\n"}) {
    auto rows = ParseTsv(bad);
    ASSERT_FALSE(rows.ok()) << bad;
    EXPECT_EQ(rows.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(SqlQuoteTest, EscapesAsClickHouseReads) {
  EXPECT_EQ(SqlQuote(""), "''");
  EXPECT_EQ(SqlQuote("it's a\\b"), "'it\\'s a\\\\b'");
  EXPECT_EQ(SqlQuote(std::string("\0\n\t\x01\x7f", 5)), "'\\0\\n\\t\\x01\\x7F'");
  EXPECT_EQ(SqlQuote("\xc3\xa9`"), "'\xc3\xa9`'");  // other bytes as they are
  EXPECT_EQ(SqlIdentifier("events"), "`events`");
  EXPECT_EQ(SqlIdentifier("we`ird\\'"), "`we\\`ird\\\\'`");
}

TEST(ClickHouseClientCreateTest, RejectsUrlsThatDoNotParse) {
  const std::vector<std::string> bad = {"",
                                        "127.0.0.1:8123",
                                        "not a url",
                                        "https://127.0.0.1:8443",
                                        "ftp://127.0.0.1:21",
                                        "http://",
                                        "http://:8123",
                                        "http://127.0.0.1:0",
                                        "http://127.0.0.1:99999",
                                        "http://127.0.0.1:80x",
                                        "http://127.0.0.1:8123/db",
                                        "http://127.0.0.1:8123/?database=x",
                                        "http://127.0.0.1:8123/#x"};
  for (const std::string& url : bad) {
    ClickHouseClientOptions options;
    options.urls = {"http://127.0.0.1:8123", url};
    auto client = ClickHouseClient::Create(options);
    ASSERT_FALSE(client.ok()) << url;
    EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument) << url;
  }
  auto none = ClickHouseClient::Create(ClickHouseClientOptions{});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
}

TEST(ClickHouseClientCreateTest, AcceptsEndpointForms) {
  ClickHouseClientOptions options;
  options.urls = {"http://127.0.0.1:8123",       "http://127.0.0.1:8123/", "http://localhost",
                  "http://user:p%40ss@db1:9000", "http://[::1]:8123",      "HTTP://Host:1"};
  auto client = ClickHouseClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_EQ((*client)->CurrentEndpoint(), "");  // nothing has succeeded yet
}

// ---- Loopback helpers ----

// A loopback port nothing listens on: connecting to it is refused.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string LoopbackUrl(int port) { return "http://127.0.0.1:" + std::to_string(port); }

// A listening loopback socket, for a hand-played HTTP server. The kernel
// completes connections into its backlog whether or not anyone accepts.
class Listener {
 public:
  Listener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && listen(fd_, 8) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~Listener() { close(fd_); }
  int port() const { return port_; }

  // The next connection, or -1 after 10 s. Its reads time out after 10 s too.
  int Accept() {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 10000) != 1) return -1;
    const int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn >= 0) {
      timeval tv{10, 0};
      setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    }
    return conn;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Reads one whole request (headers and a Content-Length body); false on
// end of stream, error or timeout.
bool ReadRequest(int fd) {
  std::string data;
  char buf[4096];
  size_t header_end = std::string::npos;
  size_t need = 0;
  while (header_end == std::string::npos || data.size() < header_end + 4 + need) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    data.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos &&
        (header_end = data.find("\r\n\r\n")) != std::string::npos) {
      const size_t at = data.find("Content-Length: ");
      if (at != std::string::npos && at < header_end) need = std::stoul(data.substr(at + 16));
    }
  }
  return true;
}

void WriteAll(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t n = write(fd, text.data(), text.size());
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

std::string OkResponse(std::string_view body, bool keep_alive) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
         (keep_alive ? "\r\nConnection: Keep-Alive" : "\r\nConnection: close") + "\r\n\r\n" +
         std::string(body);
}

std::unique_ptr<ClickHouseClient> NewClient(ClickHouseClientOptions options) {
  auto client = ClickHouseClient::Create(std::move(options));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

std::unique_ptr<ClickHouseClient> NewClient(std::vector<std::string> urls) {
  ClickHouseClientOptions options;
  options.urls = std::move(urls);
  return NewClient(std::move(options));
}

// ---- Transport behaviour against hand-played servers ----

TEST(ClickHouseClientTransportTest, StalePooledConnectionIsRetriedOnAFreshOne) {
  Listener listener;
  ASSERT_NE(listener.port(), 0);
  // The first connection answers once and keeps alive, then takes the next
  // request and closes without a word: what a server does when its
  // keep-alive timeout races a new request. The second connection answers.
  std::atomic<int> requests{0};
  std::thread server([&] {
    const int first = listener.Accept();
    if (first < 0) return;
    if (ReadRequest(first)) {
      ++requests;
      WriteAll(first, OkResponse("one\n", true));
      if (ReadRequest(first)) ++requests;
    }
    close(first);
    const int second = listener.Accept();
    if (second < 0) return;
    if (ReadRequest(second)) {
      ++requests;
      WriteAll(second, OkResponse("two\n", false));
    }
    close(second);
  });
  auto client = NewClient({LoopbackUrl(listener.port())});
  ASSERT_NE(client, nullptr);
  auto a = client->Execute("SELECT 1");
  auto b = client->Execute("SELECT 2");
  server.join();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, "one\n");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(*b, "two\n");
  EXPECT_EQ(requests.load(), 3);
}

TEST(ClickHouseClientTransportTest, NoAnswerWithinTheTimeoutIsUnavailable) {
  Listener listener;  // connects, never answers
  ASSERT_NE(listener.port(), 0);
  ClickHouseClientOptions options;
  options.urls = {LoopbackUrl(listener.port())};
  options.request_timeout_ms = 300;
  auto client = NewClient(options);
  ASSERT_NE(client, nullptr);
  auto r = client->Execute("SELECT 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
}

TEST(ClickHouseClientTransportTest, AllEndpointsDownIsUnavailable) {
  const int a = ClosedPort(), b = ClosedPort();
  auto client = NewClient({LoopbackUrl(a), LoopbackUrl(b)});
  ASSERT_NE(client, nullptr);
  auto r = client->Execute("SELECT 1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  // Both endpoints were tried, and the message says why.
  EXPECT_NE(r.status().message().find("127.0.0.1:" + std::to_string(a)), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("127.0.0.1:" + std::to_string(b)), std::string::npos)
      << r.status().message();
}

// ---- Against a real clickhouse-server ----

// One server for the whole test binary, started by the first test that needs
// it and stopped when the tests end.
ClickHouseServer* g_server = nullptr;
std::string g_server_error;

ClickHouseServer* SharedServer() {
  if (g_server == nullptr) {
    g_server = new ClickHouseServer;
    if (!g_server->Start(&g_server_error)) g_server_error = "start: " + g_server_error;
  }
  return g_server;
}

class StopSharedServer : public ::testing::Environment {
 public:
  void TearDown() override {
    delete g_server;
    g_server = nullptr;
  }
};
[[maybe_unused]] ::testing::Environment* const kStopSharedServer =
    ::testing::AddGlobalTestEnvironment(new StopSharedServer);

class ClickHouseClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ClickHouseServer::Available()) GTEST_SKIP() << "clickhouse-server is not installed";
    server_ = SharedServer();
    ASSERT_TRUE(server_->running()) << g_server_error;
    client_ = NewClient({server_->url()});
    ASSERT_NE(client_, nullptr);
  }

  // The statement's result, or a failure naming the statement.
  std::string Run(const std::string& sql, std::string_view data = {}) {
    auto r = client_->Execute(sql, data);
    EXPECT_TRUE(r.ok()) << sql << ": " << r.status().ToString();
    return r.ok() ? *r : "<error>";
  }

  Rows RunRows(const std::string& sql) {
    auto rows = ParseTsv(Run(sql));
    EXPECT_TRUE(rows.ok()) << sql << ": " << rows.status().ToString();
    return rows.ok() ? *rows : Rows{};
  }

  ClickHouseServer* server_ = nullptr;
  std::unique_ptr<ClickHouseClient> client_;
};

TEST_F(ClickHouseClientTest, SelectRoundTrip) {
  EXPECT_EQ(Run("SELECT 1, 'x'"), "1\tx\n");
  EXPECT_EQ(RunRows("SELECT number, toString(number * 2) FROM system.numbers LIMIT 3"),
            (Rows{{"0", "0"}, {"1", "2"}, {"2", "4"}}));
  EXPECT_EQ(client_->CurrentEndpoint(), "127.0.0.1:" + std::to_string(server_->port()));
}

TEST_F(ClickHouseClientTest, StatementInTheUrlIsPercentEncoded) {
  // With data, the statement travels in the URL and ClickHouse appends the
  // body to it: '+', ',', spaces and quotes all have to survive the encoding.
  EXPECT_EQ(Run("SELECT 1+1, 'a&b=c%20d' AS x,", "'e f'"), "2\ta&b=c%20d\te f\n");
}

TEST_F(ClickHouseClientTest, ATableSentAlongIsReadByTheStatement) {
  Run("CREATE DATABASE IF NOT EXISTS sent_along");
  Run("CREATE TABLE IF NOT EXISTS sent_along.t (app String, ident String) ENGINE = MergeTree "
      "ORDER BY (app, ident)");
  Run("INSERT INTO sent_along.t FORMAT TabSeparated", "a\tx\na\ty\nb\tx\n");
  // Values with a tab, a newline and a quote travel escaped.
  std::string rows;
  for (const auto& [app, ident] : std::vector<std::pair<std::string, std::string>>{
           {"a", "x"}, {"b", "y"}, {"b", "x"}, {"c\t'\n", "z"}}) {
    AppendTsv(&rows, app);
    rows.push_back('\t');
    AppendTsv(&rows, ident);
    rows.push_back('\n');
  }
  const ClickHouseClient::Table table{"keys", "app String, ident String", rows};
  auto r = client_->ExecuteWithTable(
      "SELECT app, ident FROM sent_along.t WHERE (app, ident) IN keys ORDER BY app, ident "
      "FORMAT TabSeparated",
      table);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "a\tx\nb\tx\n");
  auto all = client_->ExecuteWithTable("SELECT count(), max(length(app)) FROM keys", table);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(*all, "4\t4\n");
  // A statement error is the statement's, as with any other.
  auto bad = client_->ExecuteWithTable("SELECT nope FROM keys", table);
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
}

TEST_F(ClickHouseClientTest, DatabaseAndSettingsTravelAsUrlParameters) {
  Run("CREATE DATABASE IF NOT EXISTS " + SqlIdentifier("client db"));
  ClickHouseClientOptions options;
  options.urls = {server_->url()};
  options.database = "client db";
  auto client = NewClient(options);
  ASSERT_NE(client, nullptr);
  auto db = client->Execute("SELECT currentDatabase()");
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  EXPECT_EQ(*db, "client db\n");
  auto setting = client->Execute("SELECT value FROM system.settings WHERE name = 'max_threads'", {},
                                 {{"max_threads", "3"}});
  ASSERT_TRUE(setting.ok()) << setting.status().ToString();
  EXPECT_EQ(*setting, "3\n");
}

TEST_F(ClickHouseClientTest, InsertTabSeparatedAndSelectBack) {
  Run("DROP TABLE IF EXISTS tsv_round_trip");
  Run("CREATE TABLE tsv_round_trip (id UInt32, s String, n Nullable(String)) ENGINE = Memory");
  const std::vector<std::string> strings = TrickyStrings();
  std::string data;
  Rows expected;
  for (size_t i = 0; i < strings.size(); ++i) {
    data += std::to_string(i) + '\t';
    AppendTsv(&data, strings[i]);
    // Every other row's nullable column is NULL, which reads back as "".
    if (i % 2 == 0) {
      data += "\t\\N\n";
      expected.push_back({std::to_string(i), strings[i], ""});
    } else {
      data += '\t';
      AppendTsv(&data, strings[i]);
      data += '\n';
      expected.push_back({std::to_string(i), strings[i], strings[i]});
    }
  }
  Run("INSERT INTO tsv_round_trip FORMAT TabSeparated", data);
  EXPECT_EQ(RunRows("SELECT id, s, n FROM tsv_round_trip ORDER BY id"), expected);
  // The bytes arrived as they are, not merely as something that reads back.
  Rows lengths = RunRows("SELECT length(s) FROM tsv_round_trip ORDER BY id");
  ASSERT_EQ(lengths.size(), strings.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    EXPECT_EQ(lengths[i], std::vector<std::string>{std::to_string(strings[i].size())}) << i;
  }
}

TEST_F(ClickHouseClientTest, SqlQuoteRoundTripsThroughALiteral) {
  for (const std::string& s : TrickyStrings()) {
    EXPECT_EQ(RunRows("SELECT " + SqlQuote(s) + ", length(" + SqlQuote(s) + ")"),
              (Rows{{s, std::to_string(s.size())}}))
        << SqlQuote(s);
  }
  // Names: the column header of TSVWithNames is the alias as ClickHouse read it.
  for (const std::string name : {"plain", "we`ird", "back\\slash", "it's", "sp ace"}) {
    EXPECT_EQ(RunRows("SELECT 1 AS " + SqlIdentifier(name) + " FORMAT TSVWithNames"),
              (Rows{{name}, {"1"}}))
        << SqlIdentifier(name);
  }
}

TEST_F(ClickHouseClientTest, ServerErrorIsInternalWithItsMessage) {
  auto r = client_->Execute("SELECT no_such_column");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_EQ(r.status().message().rfind("Code: 47, e.displayText() = DB::Exception: ", 0), 0u)
      << r.status().message();
  EXPECT_NE(r.status().message().back(), '\n');  // trimmed
  auto syntax = client_->Execute("SELEKT");
  ASSERT_FALSE(syntax.ok());
  EXPECT_EQ(syntax.status().code(), StatusCode::kInternal);
  EXPECT_NE(syntax.status().message().find("Syntax error"), std::string::npos);
  // The connection an error came back on still serves.
  EXPECT_EQ(Run("SELECT 2"), "2\n");
}

TEST_F(ClickHouseClientTest, ErrorAfterRowsWereProducedIsStillAnError) {
  // Without waiting for the end of the statement, ClickHouse would have sent
  // the first blocks with a 200 status and appended the exception to them.
  auto r = client_->Execute(
      "SELECT throwIf(number = 90000) FROM system.numbers LIMIT 100000 "
      "SETTINGS max_block_size = 1000");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_EQ(r.status().message().rfind("Code: 395,", 0), 0u) << r.status().message();
}

TEST_F(ClickHouseClientTest, CredentialsTravelInHeaders) {
  const std::string host = "127.0.0.1:" + std::to_string(server_->port());
  auto user = NewClient({"http://default:@" + host});
  ASSERT_NE(user, nullptr);
  auto ok = user->Execute("SELECT 1");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto unknown = NewClient({"http://nobody:secret@" + host});
  ASSERT_NE(unknown, nullptr);
  auto denied = unknown->Execute("SELECT 1");
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), StatusCode::kInternal);
  EXPECT_NE(denied.status().message().find("nobody"), std::string::npos)
      << denied.status().message();
}

TEST_F(ClickHouseClientTest, FailsOverFromAClosedEndpoint) {
  const int closed = ClosedPort();
  auto client = NewClient({LoopbackUrl(closed), server_->url()});
  ASSERT_NE(client, nullptr);
  for (int i = 0; i < 3; ++i) {
    auto r = client->Execute("SELECT 7");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, "7\n");
    EXPECT_EQ(client->CurrentEndpoint(), "127.0.0.1:" + std::to_string(server_->port()));
  }
}

TEST_F(ClickHouseClientTest, ConcurrentStatementsAllSucceed) {
  constexpr int kThreads = 8;
  constexpr int kStatements = 50;
  std::atomic<int> failures{0};
  std::string first_failure;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kStatements; ++i) {
        const std::string n = std::to_string(t * 1000 + i);
        auto r = client_->Execute("SELECT " + n);
        if (!r.ok() || *r != n + "\n") {
          if (failures++ == 0) {
            std::lock_guard lock(mu);
            first_failure = r.ok() ? "got " + *r : r.status().ToString();
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
}

// Last of the server tests: it restarts the shared server.
TEST_F(ClickHouseClientTest, NextStatementSucceedsAfterAServerRestart) {
  Run("DROP TABLE IF EXISTS survives_restart");
  Run("CREATE TABLE survives_restart (x UInt8) ENGINE = TinyLog");
  Run("INSERT INTO survives_restart VALUES (42)");
  // The pooled connections now point at a process that is gone.
  server_->Stop();
  std::string error;
  ASSERT_TRUE(server_->Start(&error)) << error;
  EXPECT_EQ(Run("SELECT x FROM survives_restart"), "42\n");
  // Killed rather than stopped: the same.
  server_->Kill();
  ASSERT_TRUE(server_->Start(&error)) << error;
  EXPECT_EQ(Run("SELECT x FROM survives_restart"), "42\n");
}

}  // namespace
}  // namespace nucleon
