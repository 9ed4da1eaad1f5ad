// ClickHouseClient: statements sent to ClickHouse over its HTTP interface
// (https://clickhouse.com/docs/en/interfaces/http), with keep-alive
// connections and a list of endpoints tried in turn. The only translation
// unit of the ClickHouse backend that sees Boost.Beast.
//
// Results are read in TabSeparated form (ParseTsv); rows are written as
// TabSeparated too (AppendTsv). ClickHouse 18.16 has no query parameters:
// every literal goes through SqlQuote.
//
// Thread-safe: any number of threads may call Execute at once; each call
// takes an idle connection (or opens one) and gives it back.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace nucleon {

struct ClickHouseClientOptions {
  // HTTP endpoints, "http://host:port" (an optional trailing "/", optional
  // "user:password@" before the host). Tried in this order; a connection that
  // fails sends the statement to the next one.
  std::vector<std::string> urls;
  std::string database;  // sent as ?database=; empty: the server's default
  int connect_timeout_ms = 2000;
  int request_timeout_ms = 60000;
  size_t max_idle_connections = 8;  // per endpoint
  // Settings sent with every statement (before the call's own).
  std::vector<std::pair<std::string, std::string>> settings;
};

class ClickHouseClient {
 public:
  // InvalidArgument for a URL that does not parse; no connection is made yet.
  static Result<std::unique_ptr<ClickHouseClient>> Create(ClickHouseClientOptions options);
  ~ClickHouseClient();

  // Runs one statement and returns the response body. `data`, when not
  // empty, is sent as the body after the statement (an INSERT's rows: the
  // statement then travels in the URL). `settings` become URL parameters
  // (name=value, e.g. {"insert_quorum", "2"}).
  //
  // Errors: Unavailable when no endpoint could be reached or a connection
  // broke (the statement may or may not have run), or when the server that
  // answered could not reach the servers or replicas it needed (a shard
  // down, ZooKeeper gone: its message is not passed on); Internal with
  // ClickHouse's own message ("Code: 60, e.displayText() = DB::Exception:
  // ...") for any other error. Never throws.
  Result<std::string> Execute(
      std::string_view sql, std::string_view data = {},
      const std::vector<std::pair<std::string, std::string>>& settings = {});

  // A table sent along with a statement (ClickHouse's "external data"): the
  // statement reads it by its name, e.g. `WHERE (app, ident) IN keys`. Much
  // cheaper for ClickHouse than the same values as literals in the
  // statement, which must stay short here (it travels in the URL).
  struct Table {
    std::string name;       // an identifier
    std::string structure;  // "app String, ident String"
    std::string rows;       // TabSeparated (AppendTsv), one line per row
  };
  Result<std::string> ExecuteWithTable(
      std::string_view sql, const Table& table,
      const std::vector<std::pair<std::string, std::string>>& settings = {});

  // The endpoint the last successful statement went to ("host:port"); for logs.
  std::string CurrentEndpoint() const;

  // What the client was created with (to make another like it).
  const ClickHouseClientOptions& options() const;

 private:
  struct Impl;
  Result<std::string> Send(std::string_view sql, std::string_view data, const Table* table,
                           const std::vector<std::pair<std::string, std::string>>& settings);
  explicit ClickHouseClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A SQL string literal: 'text' with \\ and \' (and control bytes) escaped as
// ClickHouse reads them.
std::string SqlQuote(std::string_view text);
// A SQL identifier in backquotes, for database/table/cluster names.
std::string SqlIdentifier(std::string_view name);

// Appends one TabSeparated field (\\, \t, \n, \r, \0, \b, \f escaped), without
// a separator.
void AppendTsv(std::string* out, std::string_view field);

// Splits a TabSeparated result into rows of unescaped fields. `\N` (NULL) is
// read as an empty field. InvalidArgument on a malformed escape.
Result<std::vector<std::vector<std::string>>> ParseTsv(std::string_view text);

}  // namespace nucleon
