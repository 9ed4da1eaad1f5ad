// The ClickHouse backend's tables and how they are created and migrated.
//
// Every table is insert-only; nothing is ever updated in place:
//   events          one row per stored event (every field as sent, plus the
//                   normalised breakdown values and hashes used for deletes)
//   identities      (app, the client's date, identity hash, node, order) of
//                   every event with an id that reached ClickHouse, resends
//                   included: resends and the late resends of a deleted
//                   user's events are found here; the first copy by order is
//                   the one stored (a database of schema 3 also keeps its
//                   older `idents`: the identities stored before)
//   tombstones      the deleted events of an embedded store migrated here
//                   (the embedded store's tombstone hashes)
//   heartbeats      heartbeats already credited to a session (§1.8)
//   deletions       (user hash, order): the user's events stored before that
//                   order are gone, whatever a running mutation has removed
//   session_resets  (session hash, order): the heartbeats credited before
//                   that order no longer count (a delete recomputed the session)
//   presence, nodes the live devices each node holds and which nodes are
//                   alive (passing state, partitioned by day, old days dropped)
//   duplicates      (app, order) of events hidden as the second copy of an
//                   identity that two nodes stored at the same moment
//   apps, tokens, revocations   the catalog
//   schema_versions the migrations applied
//
// On a cluster (`cluster` set) each table is a local table on every server
// (Replicated* when the servers declare replicas through their macros) plus a
// Distributed table of the same name that reads and writes across shards.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "store/clickhouse/clickhouse_client.h"

namespace nucleon {

struct ClickHouseStoreOptions {
  std::vector<std::string> urls;  // HTTP endpoints, tried in turn
  std::string database = "nucleon";
  std::string cluster;  // empty: one server (or a replicated set behind one URL)
  // true: the local spool is fsynced before every ack (survives power loss).
  bool fsync_full = true;
  // Reads only (export, stats beside a running server): no spool is opened,
  // nothing is forwarded, appends and deletes are refused.
  bool read_only = false;
};

// Where the tables are: `database`.`name` for statements.
class ClickHouseTables {
 public:
  explicit ClickHouseTables(const ClickHouseStoreOptions& options)
      : database_(options.database), cluster_(options.cluster) {}
  std::string operator()(std::string_view table) const;
  const std::string& database() const { return database_; }
  const std::string& cluster() const { return cluster_; }

 private:
  std::string database_;
  std::string cluster_;
};

// The settings of every INSERT: on a cluster, the Distributed table writes to
// the shards before it answers (so an answer read right after sees the rows),
// and to a quorum of replicas where the cluster has replicas.
std::vector<std::pair<std::string, std::string>> InsertSettings(
    const ClickHouseStoreOptions& options);

// The client settings for a deployment: on a cluster, subqueries over
// Distributed tables are run once and sent to the shards (GLOBAL), which
// ClickHouse otherwise refuses.
ClickHouseClientOptions ClientOptionsFor(const ClickHouseStoreOptions& options);

// Creates the database and every table that is missing, then applies the
// migrations not yet recorded. Safe to run from several nodes at once.
Status EnsureClickHouseSchema(ClickHouseClient& client, const ClickHouseTables& tables);

// The newest schema this build knows: 5 added the rollups and
// `event_times`, 6 `user_events` and the name in `event_times`, 7 the
// property keys in `event_times`, 8 `prop_values`, 9 `error_times`
// (ClickHouseReader).
inline constexpr int kClickHouseSchemaVersion = 9;

}  // namespace nucleon
