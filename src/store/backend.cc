#include "store/backend.h"

#include "store/sqlite/sqlite_catalog.h"

namespace nucleon {

Result<std::unique_ptr<EventStore>> OpenEventStore(const StoreConfig& config) {
  return OpenSqliteEventStore(config.data_dir, config.sqlite);
}

Result<std::unique_ptr<Catalog>> OpenCatalog(const StoreConfig& config) {
  return OpenSqliteCatalog(config.data_dir);
}

}  // namespace nucleon
