// The ClickHouse backend: events in ClickHouse, shared by every Nucleon node
// in front of it, with a durable spool on each node so that an ack never
// waits for ClickHouse and survives its outages.
//
//   Append  -> rows written to the node's spool (fsynced by Sync) -> ack
//   forwarder thread: spool -> resends and tombstones dropped, heartbeats
//                      credited to their session -> INSERTs -> marked forwarded
//   reads   -> wait until this node's acked events are forwarded (so a client
//              reads what it wrote), then ClickHouseReader
//   deletes -> on the writer thread, once the spool is forwarded: deletion
//              rows that every read applies at once, then mutations that
//              remove the rows in the background
//
// Opening needs no ClickHouse: tracking is acked into the spool while
// ClickHouse is unreachable; reads answer Unavailable until it answers.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "store/clickhouse/clickhouse_schema.h"
#include "store/event_store.h"

namespace nucleon {

// `data_dir` holds the spool (`<data_dir>/spool`) and the node's identity.
Result<std::unique_ptr<EventStore>> OpenClickHouseEventStore(const std::string& data_dir,
                                                             const ClickHouseStoreOptions& options);

}  // namespace nucleon
