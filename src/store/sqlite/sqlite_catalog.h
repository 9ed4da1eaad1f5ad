// The embedded backend's catalog: apps and token hashes in
// `<data_dir>/catalog.db`, beside the events (store/catalog.h says what a
// catalog answers).
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "store/catalog.h"

namespace nucleon {

// Opens `<data_dir>/catalog.db`, creating and migrating it when needed.
Result<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& data_dir);

// Every app and token row of `<data_dir>/catalog.db` (read only).
Result<CatalogContents> ReadSqliteCatalog(const std::string& data_dir);

}  // namespace nucleon
