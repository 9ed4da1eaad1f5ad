#include "ingest/batch_decoder.h"

#include <boost/json.hpp>
#include <cmath>

#include "core/crypto.h"
#include "core/normalize.h"
#include "core/time_util.h"
#include "store/payload_props.h"

namespace nucleon {

namespace json = boost::json;

namespace {

// Cuts `s` to at most `max_chars` code points (UTF-8), never inside a code point.
bool TruncateChars(std::string& s, size_t max_chars) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (chars == max_chars) {
        s.resize(i);
        return true;
      }
      ++chars;
    }
  }
  return false;
}

// Cuts `s` to at most `max_bytes` bytes, never inside a code point.
bool TruncateBytes(std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return false;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  s.resize(cut);
  return true;
}

// A number as JSON text the way JavaScript writes it; "" when not finite
// (1e400 parses to infinity, which has no JSON form).
std::string NumberText(const json::value& v) {
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  if (v.is_double() && std::isfinite(v.get_double())) return RenderNumber(v.get_double());
  return {};
}

// A string field; numbers are accepted and rendered; null/absent/other -> "".
std::string Text(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_number()) return NumberText(*v);
  return {};
}

bool HasSurrogateEscape(std::string_view s) {
  for (size_t i = s.find("\\u"); i != std::string_view::npos; i = s.find("\\u", i + 2)) {
    if (i + 3 < s.size() && (s[i + 2] == 'd' || s[i + 2] == 'D') &&
        std::string_view("89abAB").find(s[i + 3]) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

// Replaces \uXXXX escapes of unpaired UTF-16 surrogates with \uFFFD. JavaScript
// produces them when it cuts a string inside an emoji, and RFC 8259 allows
// them; one such value must not make a whole queue of events unreadable.
std::string ReplaceLoneSurrogates(std::string_view in) {
  auto hex = [](std::string_view s, size_t pos, unsigned* out) {
    if (pos + 4 > s.size()) return false;
    unsigned v = 0;
    for (size_t i = pos; i < pos + 4; ++i) {
      char c = s[i];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= c - '0';
      else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
      else return false;
    }
    *out = v;
    return true;
  };
  std::string out;
  out.reserve(in.size());
  bool in_string = false;
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (!in_string) {
      if (c == '"') in_string = true;
      out += c;
      continue;
    }
    if (c == '"') {
      in_string = false;
      out += c;
      continue;
    }
    if (c != '\\' || i + 1 >= in.size()) {
      out += c;
      continue;
    }
    unsigned u;
    if (in[i + 1] != 'u' || !hex(in, i + 2, &u) || u < 0xD800 || u > 0xDFFF) {
      out += c;
      out += in[i + 1];
      ++i;
      continue;
    }
    unsigned low;
    if (u <= 0xDBFF && i + 12 <= in.size() && in[i + 6] == '\\' && in[i + 7] == 'u' &&
        hex(in, i + 8, &low) && low >= 0xDC00 && low <= 0xDFFF) {
      out.append(in.substr(i, 12));  // a proper pair
      i += 11;
      continue;
    }
    out += "\\uFFFD";
    i += 5;
  }
  return out;
}

std::optional<double> NumberOf(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_number()) {
    double d = v->to_number<double>();
    return std::isfinite(d) ? std::optional<double>(d) : std::nullopt;
  }
  if (v->is_string()) {
    try {
      size_t used = 0;
      std::string s(v->get_string());
      double d = std::stod(s, &used);
      if (used == s.size() && std::isfinite(d)) return d;
    } catch (...) {
    }
  }
  return std::nullopt;
}

// The client's date: milliseconds (number or digit string) or ISO 8601.
std::optional<int64_t> ClientDate(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    return v.get_uint64() > static_cast<uint64_t>(INT64_MAX) ? std::nullopt
                                                             : std::optional<int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    double d = v.get_double();
    if (!std::isfinite(d) || std::fabs(d) > 9e15) return std::nullopt;
    return static_cast<int64_t>(std::floor(d));
  }
  if (v.is_string()) {
    std::string_view s = v.get_string();
    bool digits = !s.empty() && s.size() <= 16;
    for (char c : s) digits = digits && c >= '0' && c <= '9';
    if (digits) return std::stoll(std::string(s));
    return ParseIsoTime(s);
  }
  return std::nullopt;
}

// Caps and flattens the payload object. Returns false when it is not an object.
// True when the payload needs no capping: few keys, scalar values within limits.
bool WithinLimits(const json::object& in, const IngestLimits& limits) {
  if (in.size() > limits.max_payload_keys) return false;
  for (const auto& kv : in) {
    if (kv.key().size() > limits.max_name_chars) return false;
    const json::value& val = kv.value();
    if (val.is_string() ? val.get_string().size() > limits.max_value_bytes
                        : val.is_object() || val.is_array() ||
                              (val.is_double() && !std::isfinite(val.get_double()))) {
      return false;
    }
  }
  return true;
}

// Numbers too large for a double (1e400) have no JSON form: inside a kept
// object or array they become null, as a top-level member does.
void NullNonFinite(json::value& v) {
  if (v.is_double() && !std::isfinite(v.get_double())) {
    v = nullptr;
  } else if (v.is_object()) {
    for (auto& kv : v.get_object()) NullNonFinite(kv.value());
  } else if (v.is_array()) {
    for (auto& item : v.get_array()) NullNonFinite(item);
  }
}

bool ReadPayload(const json::value* v, const IngestLimits& limits, Event* e, bool* truncated) {
  if (!v || v->is_null()) return true;
  if (!v->is_object()) return false;
  const json::object& in = v->get_object();
  if (WithinLimits(in, limits)) {
    e->props = ScalarProps(in);
    e->payload_json = json::serialize(in);
    return true;
  }
  json::object out;
  size_t kept = 0;
  for (const auto& kv : in) {
    if (kept == limits.max_payload_keys) {
      *truncated = true;
      break;
    }
    std::string key(kv.key());
    if (TruncateChars(key, limits.max_name_chars)) *truncated = true;
    const json::value& val = kv.value();
    if (val.is_string()) {
      std::string str(val.get_string());
      if (TruncateBytes(str, limits.max_value_bytes)) *truncated = true;
      out[key] = str;
    } else if (val.is_object() || val.is_array()) {
      // Objects and arrays are kept as data (not properties) when small enough.
      json::value kept = val;
      NullNonFinite(kept);
      if (json::serialize(kept).size() > limits.max_value_bytes) {
        *truncated = true;
        continue;
      }
      out[key] = std::move(kept);
    } else if (val.is_double() && !std::isfinite(val.get_double())) {
      out[key] = nullptr;  // 1e400: no JSON form, kept as null
    } else {
      out[key] = val;
    }
    ++kept;
  }
  e->props = ScalarProps(out);
  e->payload_json = json::serialize(out);
  return true;
}

// The members of one event that decoding looks at, found in one pass.
struct Fields {
  const json::value *type = nullptr, *name = nullptr, *event = nullptr, *id = nullptr,
                    *date = nullptr, *session = nullptr, *device = nullptr, *machine = nullptr,
                    *user = nullptr, *anon = nullptr, *payload = nullptr, *platform = nullptr,
                    *os_version = nullptr, *locale = nullptr, *language = nullptr,
                    *version = nullptr, *module_version = nullptr, *arch = nullptr,
                    *client = nullptr, *total_ram = nullptr;

  explicit Fields(const json::object& o) {
    for (const auto& kv : o) {
      const std::string_view k = kv.key();
      const json::value* v = &kv.value();
      // First occurrence wins, as with a lookup.
      auto set = [v](const json::value*& slot) {
        if (!slot) slot = v;
      };
      switch (k.size()) {
        case 2: if (k == "id") set(id); break;
        case 4:
          if (k == "type") set(type);
          else if (k == "name") set(name);
          else if (k == "date") set(date);
          else if (k == "arch") set(arch);
          break;
        case 5: if (k == "event") set(event); break;
        case 6:
          if (k == "userId") set(user);
          else if (k == "anonId") set(anon);
          else if (k == "locale") set(locale);
          else if (k == "client") set(client);
          break;
        case 7: if (k == "payload") set(payload); else if (k == "version") set(version); break;
        case 8:
          if (k == "deviceId") set(device);
          else if (k == "platform") set(platform);
          else if (k == "language") set(language);
          else if (k == "totalRam") set(total_ram);
          break;
        case 9:
          if (k == "sessionId") set(session);
          else if (k == "machineId") set(machine);
          else if (k == "osVersion") set(os_version);
          break;
        case 13: if (k == "moduleVersion") set(module_version); break;
        default: break;
      }
    }
  }
};

std::string TextOf(const json::value* v) {
  if (!v) return {};
  if (v->is_string()) return std::string(v->get_string());
  if (v->is_number()) return NumberText(*v);
  return {};
}

DecodedEvent DecodeOne(const json::value& item, std::string_view app_id, int64_t now_ms,
                       const IngestLimits& limits) {
  DecodedEvent d;
  if (!item.is_object()) {
    d.outcome = DecodedEvent::Outcome::kInvalid;
    d.invalid_reason = "an event must be an object";
    return d;
  }
  const json::object& o = item.get_object();
  const Fields f(o);
  if (const json::value* id = f.id) {
    if (id->is_string()) d.ack_id = json::serialize(*id);
    else if (id->is_number()) d.ack_id = NumberText(*id);
  }
  Event& e = d.event;
  e.app_id = std::string(app_id);

  // Type and name: `type` and `name`, with `event` as an alias of either.
  std::string type_text = TextOf(f.type);
  std::string name = TextOf(f.name);
  std::string event_alias = TextOf(f.event);
  if (!event_alias.empty()) {
    if (type_text.empty() && ParseEventType(event_alias)) {
      type_text = event_alias;
    } else if (name.empty()) {
      name = event_alias;
    }
  }
  if (type_text.empty()) type_text = "event";
  std::optional<EventType> type = ParseEventType(type_text);
  if (!type) {
    // An unknown type is an event named by it (older clients sent the name there).
    type = EventType::kEvent;
    if (name.empty()) name = type_text;
  }
  e.type = *type;
  if (TruncateChars(name, limits.max_name_chars)) d.truncated = true;
  e.name = std::move(name);

  e.device_id = TextOf(f.device);
  if (e.device_id.empty()) e.device_id = TextOf(f.machine);
  e.session_id = TextOf(f.session);
  e.user_id = TextOf(f.user);
  e.anon_id = TextOf(f.anon);
  if (TruncateChars(e.device_id, limits.max_name_chars)) d.truncated = true;
  if (TruncateChars(e.session_id, limits.max_name_chars)) d.truncated = true;
  if (TruncateChars(e.user_id, limits.max_name_chars)) d.truncated = true;
  if (TruncateChars(e.anon_id, limits.max_name_chars)) d.truncated = true;
  e.user_key = !e.user_id.empty() ? e.user_id : !e.anon_id.empty() ? e.anon_id : e.device_id;

  if (e.type == EventType::kHeartbeat) {
    d.outcome = DecodedEvent::Outcome::kHeartbeat;
    e.time_ms = now_ms;
    if (e.device_id.empty()) {
      d.outcome = DecodedEvent::Outcome::kInvalid;
      d.invalid_reason = "heartbeat without deviceId or machineId";
    }
    return d;
  }

  auto invalid = [&d](const char* why) {
    d.outcome = DecodedEvent::Outcome::kInvalid;
    d.invalid_reason = why;
    return d;
  };
  if (e.device_id.empty()) return invalid("event without deviceId or machineId");
  if (e.session_id.empty()) return invalid("event without sessionId");
  if (e.name.empty() && (e.type == EventType::kEvent || e.type == EventType::kError ||
                         e.type == EventType::kView)) {
    return invalid("event without a name");
  }

  // Time: the client's date unless absent, unreadable or more than 24 h ahead.
  e.time_ms = now_ms;
  if (const json::value* date = f.date; date && !date->is_null()) {
    std::optional<int64_t> client_ms = ClientDate(*date);
    if (client_ms && *client_ms <= now_ms + limits.max_future_ms) e.time_ms = *client_ms;
  }

  const json::value* payload = f.payload;
  if (!ReadPayload(payload, limits, &e, &d.truncated)) return invalid("payload is not an object");

  e.platform = TextOf(f.platform);
  e.os_version = TextOf(f.os_version);
  e.locale = TextOf(f.locale);
  if (e.locale.empty()) e.locale = TextOf(f.language);
  e.version = TextOf(f.version);
  e.module_version = TextOf(f.module_version);
  e.arch = TextOf(f.arch);
  e.client = TextOf(f.client);
  e.total_ram = NumberOf(f.total_ram);
  for (std::string* s : {&e.platform, &e.os_version, &e.locale, &e.version, &e.module_version,
                         &e.arch, &e.client}) {
    if (TruncateChars(*s, limits.max_name_chars)) d.truncated = true;
  }

  if (e.type == EventType::kError) {
    std::string message, stack;
    if (payload && payload->is_object()) {
      const json::object& p = payload->get_object();
      message = Text(p, "message");
      stack = Text(p, "stack");
    }
    e.error_hash = ErrorHash(e.name, message, stack);
  }

  // The identity of an event: its app, device, session (the store adds those),
  // client id, type, name and the date exactly as the client sent it.
  if (!d.ack_id.empty()) {
    e.client_id = d.ack_id;
    if (const json::value* date = f.date) e.client_date = json::serialize(*date);
  }
  return d;
}

}  // namespace

Result<DecodedBatch> DecodeBatch(std::string_view body, std::string_view app_id, int64_t now_ms,
                                 const IngestLimits& limits) {
  json::parse_options opts;
  opts.max_depth = static_cast<std::size_t>(limits.max_json_depth);
  boost::system::error_code ec;
  json::monotonic_resource mr;
  json::value root = json::parse(body, ec, &mr, opts);
  if (ec && HasSurrogateEscape(body)) {
    // Boost.JSON rejects unpaired surrogates (as a plain syntax error).
    std::string repaired = ReplaceLoneSurrogates(body);
    if (repaired != body) {
      ec.clear();
      root = json::parse(repaired, ec, &mr, opts);
    }
  }
  if (ec) {
    if (ec == json::error::too_deep) {
      return Status::InvalidArgument("JSON nested deeper than " +
                                     std::to_string(limits.max_json_depth) + " levels");
    }
    return Status::InvalidArgument("malformed JSON: " + ec.message());
  }
  const json::array* data = nullptr;
  if (root.is_object()) {
    if (const json::value* d = root.get_object().if_contains("data"); d && d->is_array()) {
      data = &d->get_array();
    }
  }
  if (!data) return Status::InvalidArgument("body must be an object with a \"data\" array");
  if (data->size() > limits.max_events_per_batch) {
    return Status::PayloadTooLarge("batch holds " + std::to_string(data->size()) +
                                   " events; at most " +
                                   std::to_string(limits.max_events_per_batch) + " are allowed");
  }
  DecodedBatch batch;
  batch.events.reserve(data->size());
  for (const json::value& item : *data) {
    batch.events.push_back(DecodeOne(item, app_id, now_ms, limits));
    if (batch.events.back().outcome == DecodedEvent::Outcome::kInvalid) ++batch.invalid;
    if (batch.events.back().truncated) ++batch.truncated;
  }
  return batch;
}

Result<ExportRecord> DecodeExportRecord(std::string_view line, std::string_view app_id) {
  boost::system::error_code ec;
  json::value root = json::parse(line, ec);
  if (ec) return Status::InvalidArgument("malformed JSON: " + ec.message());
  if (!root.is_object()) return Status::InvalidArgument("a record must be an object");
  const json::object& o = root.get_object();
  ExportRecord r;
  const std::string type_text = Text(o, "type");
  if (type_text == "tombstone") {
    r.kind = ExportRecord::Kind::kTombstone;
    const std::string hash = Text(o, "hash");
    try {
      size_t used = 0;
      r.tombstone = std::stoll(hash, &used);
      if (used != hash.size()) throw std::invalid_argument(hash);
    } catch (...) {
      return Status::InvalidArgument("a tombstone needs its hash, not \"" + hash + "\"");
    }
    return r;
  }
  const std::optional<EventType> type = ParseEventType(type_text);
  if (!type) return Status::InvalidArgument("unknown record type \"" + type_text + "\"");
  Event& e = r.event;
  e.app_id = std::string(app_id);
  e.type = *type;
  if (*type == EventType::kHeartbeat) r.kind = ExportRecord::Kind::kSessionEnd;
  const std::optional<int64_t> time = ParseIsoTime(Text(o, "time"));
  if (!time) return Status::InvalidArgument("a record needs its time");
  e.time_ms = *time;
  e.name = Text(o, "name");
  if (const json::value* id = o.if_contains("id")) {
    e.client_id = id->is_number() ? NumberText(*id) : json::serialize(*id);
  }
  if (const json::value* date = o.if_contains("date")) e.client_date = json::serialize(*date);
  if (const std::string ident = Text(o, "ident"); !ident.empty() && !e.client_id.empty()) {
    try {
      e.ident_hash = std::stoll(ident);
    } catch (...) {
      return Status::InvalidArgument("ident must be an integer, not \"" + ident + "\"");
    }
  }
  e.device_id = Text(o, "deviceId");
  e.session_id = Text(o, "sessionId");
  e.anon_id = Text(o, "anonId");
  e.user_key = Text(o, "userId");  // the user key; `identified`: it came as userId
  if (e.user_key.empty()) e.user_key = !e.anon_id.empty() ? e.anon_id : e.device_id;
  if (const json::value* v = o.if_contains("identified"); v && v->is_bool() && v->get_bool()) {
    e.user_id = e.user_key;
  }
  e.platform = Text(o, "platform");
  e.os_version = Text(o, "osVersion");
  e.locale = Text(o, "locale");
  e.version = Text(o, "version");
  e.module_version = Text(o, "moduleVersion");
  e.arch = Text(o, "arch");
  e.client = Text(o, "client");
  e.country = Text(o, "country");
  e.total_ram = NumberOf(o.if_contains("totalRam"));
  e.error_hash = Text(o, "errorHash");
  if (const json::value* payload = o.if_contains("payload"); payload && payload->is_object()) {
    e.props = ScalarProps(payload->get_object());
    e.payload_json = json::serialize(*payload);
  }
  if (e.device_id.empty() || (e.session_id.empty() && r.kind == ExportRecord::Kind::kEvent)) {
    return Status::InvalidArgument("a record needs its deviceId and sessionId");
  }
  return r;
}

bool LooksLikeBatch(std::string_view line) {
  const size_t open = line.find_first_not_of(" \t\r\n");
  if (open == std::string_view::npos || line[open] != '{') return false;
  const size_t key = line.find_first_not_of(" \t\r\n", open + 1);
  return key != std::string_view::npos && line.substr(key, 6) == "\"data\"";
}

std::string AckJson(const DecodedBatch& batch) {
  std::string out = "{\"reportedIds\":[";
  bool first = true;
  for (const DecodedEvent& d : batch.events) {
    if (d.ack_id.empty()) continue;
    if (!first) out += ',';
    out += d.ack_id;
    first = false;
  }
  out += "]}";
  return out;
}

}  // namespace nucleon
