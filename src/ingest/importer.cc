#include "ingest/importer.h"

#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <unordered_map>

#include "core/time_util.h"
#include "ingest/batch_decoder.h"
#include "store/event_export.h"

namespace nucleon {

namespace {

constexpr size_t kBatchEvents = 5000;

class Importer {
 public:
  Importer(EventStore& store, std::string_view app_id) : store_(store), app_id_(app_id) {}

  // The events without a client id that the store holds, by content.
  Status LoadStored() {
    return store_.Export(app_id_, [this](const Event& e) {
      if (!e.HasIdentity()) ++stored_without_id_[ContentHash(e)];
    });
  }

  Status Add(Event e) {
    if (!e.HasIdentity() && e.type != EventType::kHeartbeat) {
      auto it = stored_without_id_.find(ContentHash(e));
      if (it != stored_without_id_.end() && it->second > 0) {
        --it->second;
        ++report_.already;
        return Status::Ok();
      }
    }
    if (e.type == EventType::kHeartbeat) ++report_.session_ends;
    pending_.push_back(std::move(e));
    return pending_.size() >= kBatchEvents ? Flush() : Status::Ok();
  }

  Status AddBatch(std::string_view text) {
    IngestLimits limits;
    limits.max_events_per_batch = std::numeric_limits<size_t>::max();
    auto batch = DecodeBatch(text, app_id_, NowMs(), limits);
    if (!batch.ok()) return batch.status();
    for (DecodedEvent& d : batch->events) {
      if (d.outcome == DecodedEvent::Outcome::kInvalid) ++report_.invalid;
      if (d.outcome != DecodedEvent::Outcome::kStore) continue;
      NUCLEON_RETURN_IF_ERROR(Add(std::move(d.event)));
    }
    return Status::Ok();
  }

  Status Flush() {
    if (pending_.empty()) return Status::Ok();
    std::vector<uint8_t> inserted;
    NUCLEON_RETURN_IF_ERROR(store_.Append(pending_, &inserted));
    for (size_t i = 0; i < pending_.size(); ++i) {
      if (pending_[i].type == EventType::kHeartbeat) continue;
      ++(inserted[i] ? report_.stored : report_.already);
    }
    pending_.clear();
    return Status::Ok();
  }

  ImportReport& report() { return report_; }
  std::string_view app_id() const { return app_id_; }

 private:
  static uint64_t ContentHash(const Event& e) {
    return std::hash<std::string>()(ExportRecordJson(e));
  }

  EventStore& store_;
  std::string app_id_;
  std::unordered_map<uint64_t, int64_t> stored_without_id_;
  std::vector<Event> pending_;
  ImportReport report_;
};

}  // namespace

Result<ImportReport> ImportEvents(EventStore& store, std::string_view app_id, std::istream& in) {
  Importer importer(store, app_id);
  NUCLEON_RETURN_IF_ERROR(importer.LoadStored());
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++importer.report().records;
    auto at = [number](const Status& st) {
      return Status::InvalidArgument("line " + std::to_string(number) + ": " + st.message());
    };
    if (LooksLikeBatch(line)) {
      Status st = importer.AddBatch(line);
      if (!st.ok() && number == 1 && st.code() == StatusCode::kInvalidArgument) {
        // A tracking message over several lines: the whole input is one.
        std::string all = line + "\n";
        all.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        st = importer.AddBatch(all);
      }
      if (!st.ok()) return st.code() == StatusCode::kInvalidArgument ? at(st) : st;
      continue;
    }
    auto record = DecodeExportRecord(line, app_id);
    if (!record.ok()) return at(record.status());
    if (record->kind == ExportRecord::Kind::kTombstone) {
      importer.report().tombstones.push_back(record->tombstone);
      continue;
    }
    NUCLEON_RETURN_IF_ERROR(importer.Add(std::move(record->event)));
  }
  NUCLEON_RETURN_IF_ERROR(importer.Flush());
  return std::move(importer.report());
}

}  // namespace nucleon
