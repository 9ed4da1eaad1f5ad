// The one place that knows the backends: every command opens its event store
// and catalog through here, from a StoreConfig built from its flags. The rest
// of the program sees only EventStore and Catalog.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "store/catalog.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/event_store.h"
#include "store/sqlite/sqlite_event_store.h"

namespace nucleon {

struct StoreConfig {
  // "sqlite" (the embedded store, the default) or "clickhouse" (`--store`).
  std::string backend = "sqlite";
  // The data folder (`--data`): the embedded store's files, or the
  // ClickHouse backend's spool and node identity.
  std::string data_dir;
  SqliteStoreOptions sqlite;          // the embedded backend's settings
  ClickHouseStoreOptions clickhouse;  // the ClickHouse backend's settings
};

// The event store, ready for appends (reads may answer Unavailable until its
// read side is loaded, see EventStore::Ready).
Result<std::unique_ptr<EventStore>> OpenEventStore(const StoreConfig& config);
// The catalog of apps and tokens.
Result<std::unique_ptr<Catalog>> OpenCatalog(const StoreConfig& config);

}  // namespace nucleon
