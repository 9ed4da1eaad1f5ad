// The lossless export of an app (`nucleon export`, GET /api/v1/apps/:appId/export):
// every stored field of every event, each session's end (which heartbeats may
// have carried past its last event) and the tombstones of deleted users'
// events, as NDJSON or CSV (column order in docs/cli.md). Importing it
// (ingest/importer.h) into an empty store gives every API answer again.
// Written in chunks as the store reads, so memory stays flat at any size.
// Thread-compatible; the store's read methods are called from the caller's
// thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/event.h"
#include "core/status.h"
#include "store/event_store.h"

namespace nucleon {

enum class ExportFormat : uint8_t { kNdjson, kCsv };

// "ndjson" / "csv"; nullopt for anything else.
std::optional<ExportFormat> ParseExportFormat(std::string_view name);
std::string_view ExportContentType(ExportFormat format);

// A bound of the exported range: Unix seconds (as the API's start/end) or an
// ISO 8601 date or time (a date alone as `end` means the end of that day).
// Milliseconds, inclusive; nullopt when unreadable.
std::optional<int64_t> ParseExportBound(std::string_view text, bool end);

// Receives the export in chunks of some tens of kilobytes; false stops it
// (the reader went away).
using ExportWriter = std::function<bool(std::string_view chunk)>;

// Writes the app's events with a time in [from_ms, to_ms] (oldest first, ties
// in storage order), then a `heartbeat` record with the end of each session
// that ends in the range, then (for a whole export, when the store keeps
// them) one `tombstone` record per deleted event that had an identity.
Status ExportApp(EventStore& store, std::string_view app_id, int64_t from_ms, int64_t to_ms,
                 ExportFormat format, const ExportWriter& write);

// One event as an NDJSON record (no newline). Empty fields are left out; `id`,
// `date` and `payload` are the JSON exactly as stored.
std::string ExportRecordJson(const Event& e);

// The CSV header (with its newline) and one event as a CSV row (likewise).
std::string_view ExportCsvHeader();
std::string ExportCsvRow(const Event& e);

}  // namespace nucleon
