#include "store/clickhouse/clickhouse_schema.h"

#include <vector>

#include "core/time_util.h"

namespace nucleon {

namespace {

struct TableSpec {
  const char* name;
  const char* columns;
  const char* order_by;
  // Distributed tables spread rows over shards by this expression: a
  // session's events and heartbeats stay on one shard, and an app's
  // aggregates read every shard in parallel.
  const char* sharding_key;
  // Tables of passing state are partitioned by day, so old days go whole.
  const char* partition_by = nullptr;
};

// The UTC day (YYYYMMDD) of a time in ms: the partition of a row of passing state.
constexpr const char* kDayOfPublished = "toYYYYMMDD(toDateTime(intDiv(published, 1000)), 'UTC')";
constexpr const char* kDayOfAlive = "toYYYYMMDD(toDateTime(intDiv(alive, 1000)), 'UTC')";

const TableSpec kTables[] = {
    {"events",
     "app String, node UInt64, ord UInt64, time Int64, type UInt8, name String,"
     " device String, session String, sess_h UInt64, user_key String, user_h UInt64,"
     " user_id String, anon_id String, client_id String, client_date String, ident String,"
     " platform String, os_version String, locale String, version String,"
     " module_version String, arch String, client String, country String,"
     " has_ram UInt8, total_ram Float64, payload String,"
     " prop_keys Array(String), prop_kinds Array(UInt8), prop_texts Array(String),"
     " error_hash String, platform_n String, language String, ram_n String",
     "(app, device, session, ord)", "sess_h"},
    // Every copy of an identity stored or being stored (by which node, under
    // which order), kept by the client's date so that a round's lookups read
    // only the granules around the dates it holds (IdentityTime). Replaces
    // `idents` (schema 3), which a database created before still keeps.
    {"identities", "app String, t Int64, ident String, node UInt64, ord UInt64", "(app, t, ident)",
     "cityHash64(app, ident)"},
    {"tombstones", "app String, hash Int64", "(app, hash)", "cityHash64(app, hash)"},
    {"heartbeats",
     "app String, node UInt64, ord UInt64, sess_h UInt64, device String, session String,"
     " r Int64",
     "(app, sess_h, ord)", "sess_h"},
    {"deletions", "app String, user_h UInt64, ord UInt64", "(app, user_h)", "user_h"},
    {"session_resets", "app String, sess_h UInt64, ord UInt64", "(app, sess_h)", "sess_h"},
    {"duplicates", "app String, ord UInt64", "(app, ord)", "cityHash64(app)"},
    {"apps", "app_id String, name String, created_ms Int64", "app_id", "cityHash64(app_id)"},
    {"tokens", "hash String, prefix String, app_id String, created_ms Int64", "hash",
     "cityHash64(hash)"},
    {"revocations", "hash String, revoked_ms Int64", "hash", "cityHash64(hash)"},
    // Each app's own retention: the latest row of an app wins (0: none).
    {"retention", "app_id String, days Int32, set_ms Int64", "app_id", "cityHash64(app_id)"},
    // Dashboard accounts (v4): every change is a new row of the whole
    // account, the latest row of an email (by set_ms) wins, and `removed` = 1
    // ends it. `apps`: a viewer's app ids, comma-separated.
    {"accounts",
     "email String, role String, apps String, password_hash String, created_ms Int64,"
     " removed UInt8, set_ms Int64",
     "(email, set_ms)", "cityHash64(email)"},
    {"schema_versions", "version UInt32, applied_ms Int64", "version", "version"},
    {"presence",
     "app String, node UInt64, seq UInt64, device String, user_key String, user_h UInt64,"
     " platform String, os_version String, country String, last_seen Int64, open UInt8,"
     " published Int64",
     "(app, published)", "cityHash64(app, device)", kDayOfPublished},
    {"nodes", "node UInt64, alive Int64", "alive", "node", kDayOfAlive},
};

}  // namespace

std::string ClickHouseTables::operator()(std::string_view table) const {
  return SqlIdentifier(database_) + "." + SqlIdentifier(table);
}

std::vector<std::pair<std::string, std::string>> InsertSettings(
    const ClickHouseStoreOptions& options) {
  if (options.cluster.empty()) return {};
  return {{"insert_distributed_sync", "1"}};
}

ClickHouseClientOptions ClientOptionsFor(const ClickHouseStoreOptions& options) {
  ClickHouseClientOptions client;
  client.urls = options.urls;
  // Statements list a batch's identities and devices: well past the default
  // 256 KiB a statement may have.
  client.settings = {{"max_query_size", "67108864"}};
  if (!options.cluster.empty()) {
    client.settings.insert(client.settings.end(),
                           {{"distributed_product_mode", "global"},
                            // Reads and writes go to the first live
                            // replica of each shard: a read right
                            // after a write sees it.
                            {"load_balancing", "in_order"},
                            // ON CLUSTER statements answer once the live servers
                            // did them; a server that is down does them when back.
                            {"distributed_ddl_task_timeout", "10"}});
  }
  return client;
}

Status EnsureClickHouseSchema(ClickHouseClient& client, const ClickHouseTables& tables) {
  // Already there (the usual case): no DDL, which on a cluster would wait for
  // every server, also those that are down.
  auto current = client.Execute("SELECT max(version) FROM " + tables("schema_versions"));
  if (current.ok() && std::atoi(current->c_str()) == kClickHouseSchemaVersion) {
    return Status::Ok();
  }
  const std::string on_cluster =
      tables.cluster().empty() ? "" : " ON CLUSTER " + SqlIdentifier(tables.cluster());
  auto created = client.Execute("CREATE DATABASE IF NOT EXISTS " +
                                SqlIdentifier(tables.database()) + on_cluster);
  if (!created.ok()) return created.status();
  for (const TableSpec& t : kTables) {
    std::string ddl;
    const std::string partition =
        t.partition_by ? std::string(" PARTITION BY ") + t.partition_by : "";
    if (tables.cluster().empty()) {
      ddl = "CREATE TABLE IF NOT EXISTS " + tables(t.name) + " (" + t.columns +
            ") ENGINE = MergeTree" + partition + " ORDER BY " + t.order_by;
      auto st = client.Execute(ddl);
      if (!st.ok()) return st.status();
      continue;
    }
    // On a cluster: a replicated local table per server ({shard} and
    // {replica} come from each server's macros), and the Distributed table
    // the backend reads and writes.
    const std::string local = std::string(t.name) + "_local";
    ddl = "CREATE TABLE IF NOT EXISTS " + tables(local) + on_cluster + " (" + t.columns +
          ") ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/" + tables.database() + "/" +
          local + "', '{replica}')" + partition + " ORDER BY " + t.order_by;
    auto st = client.Execute(ddl);
    if (!st.ok()) return st.status();
    ddl = "CREATE TABLE IF NOT EXISTS " + tables(t.name) + on_cluster + " AS " + tables(local) +
          " ENGINE = Distributed(" + SqlIdentifier(tables.cluster()) + ", " +
          SqlIdentifier(tables.database()) + ", " + SqlIdentifier(local) + ", " + t.sharding_key +
          ")";
    st = client.Execute(ddl);
    if (!st.ok()) return st.status();
  }
  auto versions = client.Execute("SELECT max(version) FROM " + tables("schema_versions"));
  if (!versions.ok()) return versions.status();
  const int applied = std::atoi(versions->c_str());
  if (applied > kClickHouseSchemaVersion) {
    return Status::Internal("the ClickHouse schema is version " + std::to_string(applied) +
                            ", newer than this build knows (" +
                            std::to_string(kClickHouseSchemaVersion) + "): upgrade Nucleon");
  }
  if (applied < kClickHouseSchemaVersion) {
    auto st = client.Execute("INSERT INTO " + tables("schema_versions") + " VALUES (" +
                             std::to_string(kClickHouseSchemaVersion) + ", " +
                             std::to_string(NowMs()) + ")");
    if (!st.ok()) return st.status();
  }
  return Status::Ok();
}

}  // namespace nucleon
