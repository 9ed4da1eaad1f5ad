// ClickHouseImport: fills an empty ClickHouse deployment with what another
// store holds (nucleon migrate): the catalog rows (apps with their own
// retention, tokens), the events in their storage order (every field), the
// sessions' ends (heartbeats included) and the tombstones of deleted users.
// Rows are written in large INSERTs.
//
// Use from one thread: Add* in any order except that every AddEvent comes
// before AddSessionEnd; then Finish.
#pragma once

#include <memory>
#include <string>

#include "core/event.h"
#include "core/status.h"
#include "store/catalog.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_schema.h"

namespace nucleon {

class ClickHouseImport {
 public:
  // Creates the schema when missing; FailedPrecondition-like InvalidArgument
  // when the database holds apps or events already (an import goes into an
  // empty deployment, so that it can never count anything twice).
  static Result<std::unique_ptr<ClickHouseImport>> Open(const ClickHouseStoreOptions& options);

  Status AddApp(const CatalogContents::App& app);
  Status AddToken(const CatalogContents::Token& token);
  // A dashboard account, as of its creation time: an account of that email
  // the deployment has already (made there before the import) stays as it is.
  Status AddAccount(const Account& account);
  // `position`: the event's place in the source's storage order (from 1,
  // below 2^40, increasing in the order the events were stored).
  Status AddEvent(const Event& e, uint64_t position);
  // The session's end as the source store had it (the latest of its events
  // and of the heartbeats credited to it).
  Status AddSessionEnd(const std::string& app, const std::string& device,
                       const std::string& session, int64_t end_ms);
  Status AddTombstone(const std::string& app, int64_t hash);
  Status Finish();

  int64_t events() const { return events_; }

 private:
  ClickHouseImport(std::unique_ptr<ClickHouseClient> client, const ClickHouseStoreOptions& options)
      : client_(std::move(client)), options_(options), tables_(options) {}
  Status Flush(bool all);

  std::unique_ptr<ClickHouseClient> client_;
  ClickHouseStoreOptions options_;
  ClickHouseTables tables_;
  // Orders: events keep their source positions; session ends come after
  // every event (a heartbeat counts only after its session's first event);
  // all far below the orders live nodes give (receive times in ms << 22).
  uint64_t next_end_ord_ = uint64_t{1} << 40;
  int64_t events_ = 0;
  std::string apps_, tokens_, revocations_, accounts_, retention_, events_rows_, idents_, heartbeats_,
      tombstones_;
  size_t pending_rows_ = 0;
};

}  // namespace nucleon
