// The catalog (apps, token hashes and dashboard accounts) in ClickHouse, so
// that every node in front of one deployment sees an app, token or account
// created on any of them within its registry's poll interval. Tables: apps,
// tokens, revocations, accounts (insert only; a revocation is a row of its
// own, an account change a new row of the whole account).
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "store/catalog.h"
#include "store/clickhouse/clickhouse_schema.h"

namespace nucleon {

// One row of the accounts table (TabSeparated, with its newline).
void AppendAccountRow(std::string* out, const Account& account, bool removed, int64_t set_ms);

// Needs ClickHouse to answer: creates the schema when missing.
Result<std::unique_ptr<Catalog>> OpenClickHouseCatalog(const ClickHouseStoreOptions& options);

}  // namespace nucleon
