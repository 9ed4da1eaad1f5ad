// Moving up: copies an embedded data folder into a ClickHouse deployment
// (`nucleon migrate`), losslessly: apps (with their own retention) and token
// hashes (revoked ones included), every event with every field in its storage order, each
// session's end (so heartbeat-extended sessions keep their length) and the
// tombstones of deleted users. Afterwards every API answer of the ClickHouse
// deployment equals the embedded store's.
#pragma once

#include <functional>
#include <string>

#include "core/status.h"
#include "store/clickhouse/clickhouse_schema.h"

namespace nucleon {

struct MigrationReport {
  int64_t apps = 0, tokens = 0, accounts = 0, events = 0, sessions = 0, tombstones = 0;
};

// `sqlite_dir`: a data folder no server is writing to. The target database
// must be empty. `progress` gets a line now and then.
Result<MigrationReport> MigrateToClickHouse(
    const std::string& sqlite_dir, const ClickHouseStoreOptions& target,
    const std::function<void(const std::string&)>& progress);

}  // namespace nucleon
