#include "store/event_export.h"

#include <optional>

#include "core/http_types.h"
#include "core/normalize.h"
#include "core/time_util.h"

namespace nucleon {

namespace {

constexpr size_t kChunkBytes = 64 * 1024;

// Collects records and hands them on in chunks; remembers when the reader
// went away so that the rest is skipped.
class ChunkedOut {
 public:
  explicit ChunkedOut(const ExportWriter& write) : write_(write) { buffer_.reserve(kChunkBytes); }
  void Add(std::string_view record) {
    if (gone_) return;
    buffer_ += record;
    if (buffer_.size() >= kChunkBytes) Flush();
  }
  void Flush() {
    if (gone_ || buffer_.empty()) return;
    gone_ = !write_(buffer_);
    buffer_.clear();
  }
  bool gone() const { return gone_; }

 private:
  const ExportWriter& write_;
  std::string buffer_;
  bool gone_ = false;
};

// One JSON member `"key":"value"` (quoted), after a comma, when not empty.
void AddText(std::string* out, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  *out += ",\"";
  *out += key;
  *out += "\":";
  *out += JsonQuote(value);
}

// ... and one whose value is JSON text already.
void AddJson(std::string* out, std::string_view key, std::string_view json) {
  if (json.empty()) return;
  *out += ",\"";
  *out += key;
  *out += "\":";
  *out += json;
}

// A CSV field: quoted when it holds a separator, a quote or a line break.
void AddCsv(std::string* out, std::string_view value, bool last = false) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) {
    *out += value;
  } else {
    *out += '"';
    for (char c : value) {
      if (c == '"') *out += '"';
      *out += c;
    }
    *out += '"';
  }
  *out += last ? '\n' : ',';
}

// A session's end as the heartbeat that extends the session to it.
void SessionEnd(std::string_view device, std::string_view session, int64_t end_ms, Event* e) {
  e->type = EventType::kHeartbeat;
  e->device_id = std::string(device);
  e->session_id = std::string(session);
  e->time_ms = end_ms;
}

}  // namespace

std::optional<ExportFormat> ParseExportFormat(std::string_view name) {
  if (name == "ndjson" || name.empty()) return ExportFormat::kNdjson;
  if (name == "csv") return ExportFormat::kCsv;
  return std::nullopt;
}

std::optional<int64_t> ParseExportBound(std::string_view text, bool end) {
  if (text.empty()) return std::nullopt;
  const bool seconds =
      text.size() <= 12 && text.find_first_not_of("0123456789") == std::string_view::npos;
  if (seconds) {
    const int64_t s = std::stoll(std::string(text));
    return end ? s * 1000 + 999 : s * 1000;
  }
  std::optional<int64_t> ms = ParseIsoTime(text);
  if (ms && end && text.size() == 10) *ms += 86400 * 1000 - 1;  // a whole day
  return ms;
}

std::string_view ExportContentType(ExportFormat format) {
  return format == ExportFormat::kCsv ? "text/csv; charset=utf-8" : "application/x-ndjson";
}

std::string ExportRecordJson(const Event& e) {
  // The first release's fields first, as it wrote them (userId is the user
  // key, as the API shows users), then the rest.
  std::string out = "{\"type\":";
  out += JsonQuote(EventTypeName(e.type));
  AddText(&out, "name", e.name);
  AddJson(&out, "id", e.client_id);
  AddText(&out, "deviceId", e.device_id);
  AddText(&out, "sessionId", e.session_id);
  const bool heartbeat = e.type == EventType::kHeartbeat;
  if (!heartbeat) AddText(&out, "userId", e.user_key);
  out += ",\"time\":";
  out += JsonQuote(FormatIsoMs(e.time_ms));
  if (heartbeat) return out + '}';
  AddJson(&out, "payload", e.payload_json);
  AddJson(&out, "date", e.client_date);
  if (e.client_date.empty() && e.ident_hash) AddText(&out, "ident", std::to_string(*e.ident_hash));
  if (!e.user_id.empty()) out += ",\"identified\":true";
  AddText(&out, "anonId", e.anon_id);
  AddText(&out, "platform", e.platform);
  AddText(&out, "osVersion", e.os_version);
  AddText(&out, "locale", e.locale);
  AddText(&out, "version", e.version);
  AddText(&out, "moduleVersion", e.module_version);
  AddText(&out, "arch", e.arch);
  AddText(&out, "client", e.client);
  AddText(&out, "country", e.country);
  if (e.total_ram) AddJson(&out, "totalRam", RenderNumber(*e.total_ram));
  AddText(&out, "errorHash", e.error_hash);
  out += '}';
  return out;
}

std::string_view ExportCsvHeader() {
  return "type,name,id,deviceId,sessionId,userId,time,payload,date,ident,identified,anonId,"
         "platform,"
         "osVersion,locale,version,moduleVersion,arch,client,country,totalRam,errorHash,hash\n";
}

std::string ExportCsvRow(const Event& e) {
  const bool heartbeat = e.type == EventType::kHeartbeat;
  std::string out;
  AddCsv(&out, EventTypeName(e.type));
  for (const std::string* s : {&e.name, &e.client_id, &e.device_id, &e.session_id})
    AddCsv(&out, *s);
  AddCsv(&out, heartbeat ? std::string() : e.user_key);
  AddCsv(&out, FormatIsoMs(e.time_ms));
  AddCsv(&out, heartbeat ? std::string() : e.payload_json);
  AddCsv(&out, e.client_date);
  AddCsv(&out, e.client_date.empty() && e.ident_hash ? std::to_string(*e.ident_hash) : "");
  AddCsv(&out, e.user_id.empty() ? "" : "true");
  for (const std::string* s : {&e.anon_id, &e.platform, &e.os_version, &e.locale, &e.version,
                               &e.module_version, &e.arch, &e.client, &e.country}) {
    AddCsv(&out, *s);
  }
  AddCsv(&out, e.total_ram ? RenderNumber(*e.total_ram) : std::string());
  AddCsv(&out, e.error_hash);
  AddCsv(&out, "", /*last=*/true);
  return out;
}

Status ExportApp(EventStore& store, std::string_view app_id, int64_t from_ms, int64_t to_ms,
                 ExportFormat format, const ExportWriter& write) {
  ChunkedOut out(write);
  const bool csv = format == ExportFormat::kCsv;
  auto record = [&](const Event& e) {
    if (csv) {
      out.Add(ExportCsvRow(e));
    } else {
      out.Add(ExportRecordJson(e));
      out.Add("\n");
    }
  };
  if (csv) out.Add(ExportCsvHeader());
  NUCLEON_RETURN_IF_ERROR(store.ExportRange(app_id, from_ms, to_ms, [&](const Event& e) {
    record(e);
    return !out.gone();
  }));
  if (out.gone()) return Status::Ok();
  Event end;
  Status ends = store.SessionEnds(
      app_id, [&](const std::string& device, const std::string& session, int64_t end_ms) {
        if (end_ms < from_ms || end_ms > to_ms) return Status::Ok();
        SessionEnd(device, session, end_ms, &end);
        record(end);
        return out.gone() ? Status::Unavailable("the reader went away") : Status::Ok();
      });
  if (out.gone()) return Status::Ok();
  NUCLEON_RETURN_IF_ERROR(ends);
  if (from_ms == INT64_MIN && to_ms == INT64_MAX) {
    NUCLEON_RETURN_IF_ERROR(store.Tombstones(app_id, [&](int64_t hash) {
      const std::string h = std::to_string(hash);
      if (csv) {
        out.Add("tombstone");
        out.Add(std::string(22, ','));
        out.Add(h + "\n");
      } else {
        out.Add("{\"type\":\"tombstone\",\"hash\":\"" + h + "\"}\n");
      }
    }));
  }
  out.Flush();
  return Status::Ok();
}

}  // namespace nucleon
