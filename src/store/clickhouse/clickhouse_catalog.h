// The catalog (apps and token hashes) in ClickHouse, so that every node in
// front of one deployment sees an app or token created on any of them within
// its registry's poll interval. Tables: apps, tokens, revocations (insert
// only; a revocation is a row of its own).
#pragma once

#include <memory>

#include "core/status.h"
#include "store/catalog.h"
#include "store/clickhouse/clickhouse_schema.h"

namespace nucleon {

// Needs ClickHouse to answer: creates the schema when missing.
Result<std::unique_ptr<Catalog>> OpenClickHouseCatalog(const ClickHouseStoreOptions& options);

}  // namespace nucleon
