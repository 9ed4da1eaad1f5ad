#include "store/clickhouse/clickhouse_schema.h"

#include <mutex>
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
  // The MergeTree family member ("Aggregating" for rollups, "" for plain).
  const char* engine = "";
  // For a table materialized views fill: the schema version that added it
  // (a database made before gets it filled from the rows it holds); 0 for
  // the others.
  int derived_since = 0;
};

// A rollup is kept current by materialized views over the tables it sums
// (on a cluster, over each server's local tables, so a replica's views see
// exactly the rows inserted into it; replicas copy the rollup's own parts).
struct ViewSpec {
  const char* name;
  const char* target;
  const char* source;
  const char* select;  // "... FROM {source} ..." with {source} replaced
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
    // The columns the quick glance, the daily analytics, the event and
    // error counts and the list of property keys read from events, in time
    // order (v5; the name since v6, `prop_list` since v7): a range is only its
    // own granules here. (Property values are not copied: they are most of an
    // event's size.) `prop_list`: an app start's or event's property kinds
    // and keys, each as `<kind>,<length of key>:<key>`, one after the other.
    {"event_times",
     "app String, time Int64, ord UInt64, type UInt8, user_h UInt64, sess_h UInt64,"
     " platform_n String, language String, version String, country String, ram_n String,"
     " name String, prop_list String",
     "(app, time)", "sess_h", nullptr, "", 7},
    // The columns a user's summary reads, by user (v6): a page of users or
    // one user is a few granules here rather than a scan of `events`. The
    // payload only of the events whose props a user keeps (app starts,
    // props and user id events).
    {"user_events",
     "app String, user_h UInt64, time Int64, ord UInt64, type UInt8, user_key String,"
     " sess_h UInt64, device String, payload String",
     "(app, user_h, time)", "sess_h", nullptr, "", 6},
    // The property keys and values of app starts and events that carry
    // some, by event name (`init` for app starts and events of that name
    // alike) and time (v8): a key's value counts read the range's rows of
    // one event, rather than every event of the app. (One row per value,
    // ordered by key too, answered in half the time but took 1.8 times the
    // space and added twice as much to each insert: docs/performance.md.)
    {"prop_values",
     "app String, ev String, time Int64, ord UInt64, user_h UInt64, prop_keys Array(String),"
     " prop_texts Array(String)",
     "(app, ev, time)", "user_h", nullptr, "", 8},
    // The errors alone, in time order (v9): the error counts and groups read
    // the range's errors, a small part of its events, rather than every
    // event of the range.
    {"error_times", "app String, time Int64, ord UInt64, user_h UInt64, name String", "(app, time)",
     "user_h", nullptr, "", 9},
    // Rollups (v5, see ClickHouseReader): every column but the key is an
    // aggregate state, so rows of the same key merge in the background. Each
    // carries the largest order of the rows it sums: two inserts never give
    // identical blocks, which a replicated table would take for a resend.
    //
    // Per user and 15-minute bucket: app starts, errors, the first event's time.
    {"user_buckets",
     "app String, bucket Int64, user_h UInt64, inits AggregateFunction(sum, UInt64),"
     " errors AggregateFunction(sum, UInt64), first AggregateFunction(min, Int64), last_ord "
     "AggregateFunction(max, UInt64)",
     "(app, bucket, user_h)", "user_h", nullptr, "Aggregating", 5},
    // The values app starts carried, per user and bucket (breakdowns).
    {"init_values",
     "app String, bucket Int64, user_h UInt64, platform_n String, language String,"
     " version String, country String, ram_n String, last_ord AggregateFunction(max, UInt64)",
     "(app, bucket, user_h, platform_n, language, version, country, ram_n)", "user_h", nullptr,
     "Aggregating", 5},
    // Per session (and its device's hash): its start and its end, each one
    // numeric state, which ClickHouse merges several times faster than
    // strings, tuples or -If forms. `start_key` orders an app start before
    // any other event: (not an app start) * 2^62 + time + 2^61, so its
    // minimum is the earliest app start, or the earliest event of a session
    // without one (semantics §3.2); 2^64 - 1 (a heartbeat's) means no event.
    // `last`: the latest event or heartbeat; `first`: the earliest event.
    {"session_parts",
     "app String, sess_h UInt64, dev_h UInt64, start_key AggregateFunction(min, UInt64),"
     " first AggregateFunction(min, Int64), last AggregateFunction(max, Int64),"
     " users AggregateFunction(groupUniqArrayIf, UInt64, UInt8),"
     " last_ord AggregateFunction(max, UInt64)",
     "(app, sess_h, dev_h)", "sess_h", nullptr, "Aggregating", 5},
};

const ViewSpec kViews[] = {
    {"event_times_mv", "event_times", "events",
     "SELECT app, time, ord, type, user_h, sess_h, platform_n, language, version, country, ram_n,"
     " name, if(type IN (1, 2), arrayStringConcat(arrayMap((k, kind) -> concat(toString(kind),"
     " ',', toString(length(k)), ':', k), prop_keys, prop_kinds)), '') AS prop_list"
     " FROM {source}"},
    {"user_events_mv", "user_events", "events",
     "SELECT app, user_h, time, ord, type, user_key, sess_h, device,"
     " if(type IN (1, 4, 5), payload, '') AS payload FROM {source}"},
    {"prop_values_mv", "prop_values", "events",
     "SELECT app, if(type = 1, 'init', name) AS ev, time, ord, user_h, prop_keys, prop_texts"
     " FROM {source} WHERE type IN (1, 2) AND notEmpty(prop_keys)"},
    {"error_times_mv", "error_times", "events",
     "SELECT app, time, ord, user_h, name FROM {source} WHERE type = 3"},
    {"user_buckets_mv", "user_buckets", "events",
     "SELECT app, intDiv(time, 900000) - (time % 900000 < 0) AS bucket, user_h,"
     " sumState(toUInt64(type = 1)) AS inits, sumState(toUInt64(type = 3)) AS errors,"
     " minState(time) AS first, maxState(ord) AS last_ord FROM {source}"
     " GROUP BY app, bucket, user_h"},
    {"init_values_mv", "init_values", "events",
     "SELECT app, intDiv(time, 900000) - (time % 900000 < 0) AS bucket, user_h, platform_n,"
     " language, version, country, ram_n, maxState(ord) AS last_ord FROM {source}"
     " WHERE type = 1 GROUP BY app, bucket, user_h, platform_n, language, version, country,"
     " ram_n"},
    // A view gives every column of its target: the columns the other view
    // fills get a neutral state (the extreme for min and max, nothing for
    // the -If form).
    {"session_parts_mv", "session_parts", "events",
     "SELECT app, sess_h, cityHash64(device) AS dev_h,"
     " minState(toUInt64(time + 2305843009213693952) + (type != 1) * 4611686018427387904)"
     " AS start_key, minState(time) AS first, maxState(time) AS last,"
     " groupUniqArrayIfState(user_h, 1) AS users, maxState(ord) AS last_ord FROM {source}"
     " GROUP BY app, sess_h, dev_h"},
    {"session_beats_mv", "session_parts", "heartbeats",
     "SELECT app, sess_h, cityHash64(device) AS dev_h,"
     " minState(toUInt64(18446744073709551615)) AS start_key,"
     " minState(toInt64(9223372036854775807)) AS first, maxState(r) AS last,"
     " groupUniqArrayIfState(toUInt64(0), toUInt8(0)) AS users, maxState(ord) AS last_ord"
     " FROM {source} GROUP BY app, sess_h, dev_h"},
};

std::string Replace(std::string text, std::string_view from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

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

namespace {

// The tables materialized views fill that a database at schema `applied`
// lacks (filled from the rows on an upgrade).
bool DerivedAfter(const TableSpec& t, int applied) { return t.derived_since > applied; }

bool TargetDerivedAfter(const ViewSpec& v, int applied) {
  for (const TableSpec& t : kTables) {
    if (std::string_view(t.name) == v.target) return DerivedAfter(t, applied);
  }
  return false;
}

Status CreateTable(ClickHouseClient& client, const ClickHouseTables& tables, const TableSpec& t,
                   const std::string& on_cluster) {
  const std::string partition =
      t.partition_by ? std::string(" PARTITION BY ") + t.partition_by : "";
  if (tables.cluster().empty()) {
    return client
        .Execute("CREATE TABLE IF NOT EXISTS " + tables(t.name) + " (" + t.columns +
                 ") ENGINE = " + t.engine + "MergeTree" + partition + " ORDER BY " + t.order_by)
        .status();
  }
  // On a cluster: a replicated local table per server ({shard} and
  // {replica} come from each server's macros), and the Distributed table
  // the backend reads and writes.
  const std::string local = std::string(t.name) + "_local";
  auto st = client.Execute("CREATE TABLE IF NOT EXISTS " + tables(local) + on_cluster + " (" +
                           t.columns + ") ENGINE = Replicated" + t.engine +
                           "MergeTree('/clickhouse/tables/{shard}/" + tables.database() + "/" +
                           local + "', '{replica}')" + partition + " ORDER BY " + t.order_by);
  if (!st.ok()) return st.status();
  return client
      .Execute("CREATE TABLE IF NOT EXISTS " + tables(t.name) + on_cluster + " AS " +
               tables(local) + " ENGINE = Distributed(" + SqlIdentifier(tables.cluster()) + ", " +
               SqlIdentifier(tables.database()) + ", " + SqlIdentifier(local) + ", " +
               t.sharding_key + ")")
      .status();
}

std::string Local(const ClickHouseTables& tables, std::string_view name) {
  return tables.cluster().empty() ? tables(name) : tables(std::string(name) + "_local");
}

Status CreateView(ClickHouseClient& client, const ClickHouseTables& tables, const ViewSpec& v,
                  const std::string& on_cluster) {
  return client
      .Execute("CREATE MATERIALIZED VIEW IF NOT EXISTS " + tables(v.name) + on_cluster + " TO " +
               Local(tables, v.target) + " AS " +
               Replace(v.select, "{source}", Local(tables, v.source)))
      .status();
}

// A database made before some derived tables (or whose derived tables a
// failed upgrade left half filled) gets them afresh from the rows it holds;
// the others stay as they are. The nodes writing to it are expected to be
// stopped meanwhile (docs/scale-out.md, Upgrading): rows inserted during the
// rebuild could be counted twice or not at all.
Status RebuildDerived(ClickHouseClient& client, const ClickHouseTables& tables,
                      const std::string& on_cluster, int applied) {
  // Filling a rollup from a large table takes minutes: with a client that
  // waits for it (a timeout would leave it running while a retry starts
  // another).
  ClickHouseClientOptions patient = client.options();
  patient.request_timeout_ms = 3 * 3600 * 1000;
  auto filler = ClickHouseClient::Create(patient);
  if (!filler.ok()) return filler.status();
  for (const ViewSpec& v : kViews) {
    if (!TargetDerivedAfter(v, applied)) continue;
    auto st = client.Execute("DROP TABLE IF EXISTS " + tables(v.name) + on_cluster);
    if (!st.ok()) return st.status();
  }
  for (const TableSpec& t : kTables) {
    if (!DerivedAfter(t, applied)) continue;
    for (const std::string& name :
         {std::string(t.name), tables.cluster().empty() ? "" : std::string(t.name) + "_local"}) {
      if (name.empty()) continue;
      auto st = client.Execute("DROP TABLE IF EXISTS " + tables(name) + on_cluster);
      if (!st.ok()) return st.status();
    }
    NUCLEON_RETURN_IF_ERROR(CreateTable(client, tables, t, on_cluster));
  }
  for (const ViewSpec& v : kViews) {
    NUCLEON_RETURN_IF_ERROR(CreateView(client, tables, v, on_cluster));
    if (!TargetDerivedAfter(v, applied)) continue;
    // Through the Distributed tables on a cluster: every shard's rows, and
    // each derived row sent to a shard of its own.
    auto st = (*filler)->Execute(
        "INSERT INTO " + tables(v.target) + " " + Replace(v.select, "{source}", tables(v.source)),
        "", {{"insert_distributed_sync", "1"}});
    if (!st.ok()) return st.status();
  }
  return Status::Ok();
}

}  // namespace

Status EnsureClickHouseSchema(ClickHouseClient& client, const ClickHouseTables& tables) {
  // One at a time in a process (the catalog and the event store both ask):
  // the second finds the work done.
  static std::mutex mu;
  std::lock_guard lock(mu);
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
    NUCLEON_RETURN_IF_ERROR(CreateTable(client, tables, t, on_cluster));
  }
  auto versions = client.Execute("SELECT max(version) FROM " + tables("schema_versions"));
  if (!versions.ok()) return versions.status();
  const int applied = std::atoi(versions->c_str());
  if (applied > kClickHouseSchemaVersion) {
    return Status::Internal("the ClickHouse schema is version " + std::to_string(applied) +
                            ", newer than this build knows (" +
                            std::to_string(kClickHouseSchemaVersion) + "): upgrade Nucleon");
  }
  if (applied > 0) {
    NUCLEON_RETURN_IF_ERROR(RebuildDerived(client, tables, on_cluster, applied));
  } else {
    for (const ViewSpec& v : kViews) {
      NUCLEON_RETURN_IF_ERROR(CreateView(client, tables, v, on_cluster));
    }
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
