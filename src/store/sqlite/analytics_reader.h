// AnalyticsReader: the analytics endpoints' numbers (quick glance, daily,
// events, event properties, event attribute, errors) from the rollups, the
// per-bucket counts and, for the parts of a range that cut a 15-minute bucket,
// the raw events of that part, counted through the same code as the rollups
// (rollup_events.h), so answers are exact for any range and time zone.
//
// A query walks its range in local hours; each piece is a whole stored bucket
// or a cut window read from the events table. Whole local days (every real
// time zone is a whole number of quarter hours from UTC) are cached as day
// aggregates (rollups.h) until a bucket of theirs changes.
//
// Thread-safety: any number of readers at once, each with its own connection
// (inside one read transaction, so the rows it reads are one snapshot).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "store/analytics.h"
#include "store/sqlite/rollups.h"
#include "store/sqlite/sqlite_db.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

class AnalyticsReader {
 public:
  AnalyticsReader(Rollups* rollups, StringDictionary* dict) : rollups_(rollups), dict_(dict) {}

  Result<QuickGlanceCounts> QuickGlance(int64_t app, int64_t from_ms, int64_t to_ms,
                                        const ReadTx& tx);
  Result<DailyAnalytics> Daily(int64_t app, const QueryRange& range, const ReadTx& tx);
  Result<DailyCounts> EventCounts(int64_t app, const QueryRange& range, bool errors,
                                  const ReadTx& tx);
  // The error events in range, read from the rows of the buckets whose
  // rollups count errors (the other buckets are not read).
  Result<std::vector<ErrorGroup>> ErrorGroups(int64_t app, std::string_view app_id,
                                              const QueryRange& range, const ReadTx& tx);
  // From the buckets' session counts, and the sessions table at the range's cut edges.
  Result<SessionDays> Sessions(int64_t app, const QueryRange& range, const ReadTx& tx);
  Result<std::vector<EventPropKeys>> EventProps(int64_t app, const QueryRange& range,
                                                const ReadTx& tx);
  Result<std::vector<ValueCount>> EventAttribute(int64_t app, const QueryRange& range,
                                                 std::string_view event, std::string_view attr,
                                                 const ReadTx& tx);

  // The pieces of a range: whole stored buckets and cut windows, per local hour.
  struct Pieces {
    struct Item {
      int64_t hour = 0;  // local hours since 1970
      int64_t bucket = 0;
      const BucketCore* core = nullptr;
      bool stored = false;  // a stored bucket (else built from a cut window's raw events)
      size_t raw_begin = 0, raw_end = 0;  // cut windows: their events in `raw`
    };
    std::vector<Item> items;
    std::vector<CoreRef> refs;  // the stored buckets used, ascending
    std::vector<std::unique_ptr<BucketCore>> built;
    std::vector<RollupEvent> raw;
    std::vector<BodyProp> raw_props;
  };
  // `keep`: cache the buckets read from disk (see Rollups::Cores).
  Status CollectPieces(int64_t app, int64_t from_ms, int64_t to_ms, int offset_min, bool with_props,
                       const ReadTx& tx, Pieces* out, bool keep = true);

 private:
  Result<std::shared_ptr<const DayAgg>> BuildDay(int64_t app, int64_t from_ms, int64_t to_ms,
                                                 int offset_min, const ReadTx& tx,
                                                 std::vector<CoreRef>* refs, bool keep);
  Rollups* rollups_;
  StringDictionary* dict_;
};

}  // namespace nucleon
