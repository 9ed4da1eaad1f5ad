// ClickHouseSharedLive: the live view the nodes in front of one ClickHouse
// deployment share, through two tables of passing state:
//   presence  a row each time a device's state on a node changed (its
//             latest activity and context, or that the node closed it)
//   nodes     a row per node and second: which nodes are alive
// A node publishes about once a second; it reads the other live nodes'
// latest row per device and merges its own current devices in. A node that
// stops publishing (killed, cut off) drops out with its devices within
// kNodeAliveMs. Live events are the `events` rows themselves. Old days of
// both tables are dropped by the publishing nodes.
//
// Node clocks are assumed to agree within a second or two (NTP), as the
// 2-minute presence window and the alive check compare times of different
// nodes.
//
// Thread-safe: Publish from one thread at a time; the reads from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "store/clickhouse/clickhouse_client.h"
#include "store/clickhouse/clickhouse_reader.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/shared_live.h"

namespace nucleon {

class ClickHouseSharedLive final : public SharedLive {
 public:
  // A node whose last publish is older than this is gone.
  static constexpr int64_t kNodeAliveMs = 5000;

  // `ready` is run before a read: it answers whether ClickHouse can be read
  // and, when asked to, waits (bounded) for this node's own events to be there.
  // `run_later` queues a slow statement (dropping an old day, which on a
  // cluster waits for every server) on a thread that does not publish.
  ClickHouseSharedLive(ClickHouseClient* client, ClickHouseReader* reader,
                       const ClickHouseStoreOptions& options,
                       std::function<Status(bool wait_for_own_events)> ready,
                       std::function<void(std::string)> run_later);

  Status Publish(std::span<const PresenceRecord> changes, int64_t now_ms) override;
  Result<std::vector<PresenceRecord>> Present(std::string_view app_id,
                                              std::vector<PresenceRecord> local,
                                              int64_t now_ms) override;
  Result<std::vector<Event>> Recent(std::string_view app_id, int64_t from_ms, int64_t to_ms,
                                    size_t limit) override;

  // The statement that removes a deleted user's presence rows (last active
  // at or before `deleted_ms`), for the delete's mutations.
  std::string DeleteUserStatement(std::string_view app_id, uint64_t user_h,
                                  int64_t deleted_ms) const;

 private:
  Status DropOldDays(int64_t now_ms);

  ClickHouseClient* client_;
  ClickHouseReader* reader_;
  ClickHouseStoreOptions options_;
  ClickHouseTables tables_;
  std::function<Status(bool)> ready_;
  std::function<void(std::string)> run_later_;
  // This process (not the node's stored id: a restarted node holds none of
  // the connections it published before).
  const uint64_t incarnation_;
  uint64_t seq_ = 0;             // Publish's caller
  int64_t next_cleanup_ms_ = 0;  // Publish's caller
};

}  // namespace nucleon
