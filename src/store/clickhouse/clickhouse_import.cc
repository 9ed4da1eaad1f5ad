#include "store/clickhouse/clickhouse_import.h"

#include "store/clickhouse/clickhouse_catalog.h"
#include "store/clickhouse/event_rows.h"
#include "store/payload_props.h"

namespace nucleon {

namespace {

constexpr size_t kRowsPerInsert = 100000;

int64_t Count(ClickHouseClient& client, const std::string& sql) {
  auto body = client.Execute(sql);
  return body.ok() ? std::atoll(body->c_str()) : -1;
}

}  // namespace

Result<std::unique_ptr<ClickHouseImport>> ClickHouseImport::Open(
    const ClickHouseStoreOptions& options) {
  ClickHouseClientOptions client_options = ClientOptionsFor(options);
  client_options.request_timeout_ms = 600000;
  auto client = ClickHouseClient::Create(client_options);
  if (!client.ok()) return client.status();
  const ClickHouseTables tables(options);
  NUCLEON_RETURN_IF_ERROR(EnsureClickHouseSchema(**client, tables));
  for (const char* table : {"apps", "events"}) {
    const int64_t n = Count(**client, std::string("SELECT count() FROM ") + tables(table));
    if (n < 0) return Status::Unavailable("ClickHouse does not answer");
    if (n > 0) {
      return Status::InvalidArgument("the ClickHouse database " + options.database +
                                     " already holds " + table +
                                     ": migrate into an empty database");
    }
  }
  return std::unique_ptr<ClickHouseImport>(new ClickHouseImport(std::move(*client), options));
}

Status ClickHouseImport::AddApp(const CatalogContents::App& app) {
  AppendTsv(&apps_, app.app_id);
  apps_.push_back('\t');
  AppendTsv(&apps_, app.name);
  apps_ += "\t" + std::to_string(app.created_ms) + "\n";
  if (app.retain_days > 0) {
    // As SetRetention writes it; set at the app's creation, so that any later
    // setting wins.
    AppendTsv(&retention_, app.app_id);
    retention_ +=
        "\t" + std::to_string(app.retain_days) + "\t" + std::to_string(app.created_ms) + "\n";
  }
  return Status::Ok();
}

Status ClickHouseImport::AddAccount(const Account& account) {
  AppendAccountRow(&accounts_, account, /*removed=*/false, account.created_ms);
  return Status::Ok();
}

Status ClickHouseImport::AddToken(const CatalogContents::Token& token) {
  AppendTsv(&tokens_, token.hash);
  tokens_.push_back('\t');
  AppendTsv(&tokens_, token.prefix);
  tokens_.push_back('\t');
  AppendTsv(&tokens_, token.app_id);
  tokens_ += "\t" + std::to_string(token.created_ms) + "\n";
  if (token.revoked_ms) {
    AppendTsv(&revocations_, token.hash);
    revocations_ += "\t" + std::to_string(*token.revoked_ms) + "\n";
  }
  return Status::Ok();
}

Status ClickHouseImport::AddEvent(const Event& e, uint64_t position) {
  if (position == 0 || position >= next_end_ord_) {
    return Status::InvalidArgument("an event position out of range");
  }
  const uint64_t ord = position;
  if (e.props.empty() && e.payload_json.size() > 2) {
    // A store's export may give the payload alone: its properties are
    // derived from it exactly as at ingest.
    Event with_props = e;
    with_props.props = ParsePayloadProps(e.payload_json);
    AppendEventRow(with_props, /*node=*/0, ord, &events_rows_);
  } else {
    AppendEventRow(e, /*node=*/0, ord, &events_rows_);
  }
  AppendIdentityRow(e, /*node=*/0, ord, &idents_);
  ++events_;
  ++pending_rows_;
  return Flush(false);
}

Status ClickHouseImport::AddSessionEnd(const std::string& app, const std::string& device,
                                       const std::string& session, int64_t end_ms) {
  AppendTsv(&heartbeats_, app);
  heartbeats_ += "\t0\t" + std::to_string(next_end_ord_++) + "\t" +
                 std::to_string(SessionHash(app, device, session)) + "\t";
  AppendTsv(&heartbeats_, device);
  heartbeats_.push_back('\t');
  AppendTsv(&heartbeats_, session);
  heartbeats_ += "\t" + std::to_string(end_ms) + "\n";
  ++pending_rows_;
  return Flush(false);
}

Status ClickHouseImport::AddTombstone(const std::string& app, int64_t hash) {
  AppendTsv(&tombstones_, app);
  tombstones_ += "\t" + std::to_string(hash) + "\n";
  ++pending_rows_;
  return Flush(false);
}

Status ClickHouseImport::Flush(bool all) {
  if (!all && pending_rows_ < kRowsPerInsert) return Status::Ok();
  // Identities before their events, as the forwarder writes them.
  for (auto [table, rows] : {std::pair<const char*, std::string*>{"identities", &idents_},
                             {"events", &events_rows_},
                             {"heartbeats", &heartbeats_},
                             {"tombstones", &tombstones_}}) {
    if (rows->empty()) continue;
    auto st = client_->Execute("INSERT INTO " + tables_(table) + " FORMAT TabSeparated", *rows,
                               InsertSettings(options_));
    if (!st.ok()) return st.status();
    rows->clear();
  }
  pending_rows_ = 0;
  return Status::Ok();
}

Status ClickHouseImport::Finish() {
  NUCLEON_RETURN_IF_ERROR(Flush(true));
  // The catalog last: until it is in, no node serves the imported apps.
  for (auto [table, rows] : {std::pair<const char*, std::string*>{"tokens", &tokens_},
                             {"revocations", &revocations_},
                             {"accounts", &accounts_},
                             {"retention", &retention_},
                             {"apps", &apps_}}) {
    if (rows->empty()) continue;
    auto st = client_->Execute("INSERT INTO " + tables_(table) + " FORMAT TabSeparated", *rows,
                               InsertSettings(options_));
    if (!st.ok()) return st.status();
    rows->clear();
  }
  return Status::Ok();
}

}  // namespace nucleon
