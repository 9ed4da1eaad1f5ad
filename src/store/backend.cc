#include "store/backend.h"

#include "store/clickhouse/clickhouse_catalog.h"
#include "store/clickhouse/clickhouse_event_store.h"
#include "store/sqlite/sqlite_catalog.h"

namespace nucleon {

namespace {

Status UnknownBackend(const StoreConfig& config) {
  return Status::InvalidArgument("unknown store " + config.backend + ": use sqlite or clickhouse");
}

}  // namespace

Result<std::unique_ptr<EventStore>> OpenEventStore(const StoreConfig& config) {
  if (config.backend == "sqlite") return OpenSqliteEventStore(config.data_dir, config.sqlite);
  if (config.backend == "clickhouse") {
    return OpenClickHouseEventStore(config.data_dir, config.clickhouse);
  }
  return UnknownBackend(config);
}

Result<std::unique_ptr<Catalog>> OpenCatalog(const StoreConfig& config) {
  if (config.backend == "sqlite") return OpenSqliteCatalog(config.data_dir);
  if (config.backend == "clickhouse") return OpenClickHouseCatalog(config.clickhouse);
  return UnknownBackend(config);
}

}  // namespace nucleon
