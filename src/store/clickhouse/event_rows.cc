#include "store/clickhouse/event_rows.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/crypto.h"
#include "core/normalize.h"
#include "core/time_util.h"
#include "store/clickhouse/clickhouse_client.h"
#include "store/payload_props.h"

namespace nucleon {

const char* const kEventSelectColumns =
    "type, name, client_id, device, session, user_key, user_id, anon_id, time,"
    " client_date, platform, os_version, locale, version, module_version, arch, client,"
    " country, has_ram, total_ram, payload, error_hash";

namespace {

uint64_t Hash64(std::string_view a, std::string_view b, std::string_view c = {}) {
  std::string material;
  material.reserve(a.size() + b.size() + c.size() + 2);
  material.append(a).push_back('\0');
  material.append(b).push_back('\0');
  material.append(c);
  return static_cast<uint64_t>(StableHash64(material));
}

void Field(std::string* out, std::string_view text) {
  AppendTsv(out, text);
  out->push_back('\t');
}

void Number(std::string* out, uint64_t v) {
  out->append(std::to_string(v));
  out->push_back('\t');
}

void Signed(std::string* out, int64_t v) {
  out->append(std::to_string(v));
  out->push_back('\t');
}

std::string RoundTrip(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

bool ParseInt(const std::string& s, int64_t* v) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

uint64_t SessionHash(std::string_view app, std::string_view device, std::string_view session) {
  return Hash64(app, device, session);
}

uint64_t UserHash(std::string_view app, std::string_view user_key) { return Hash64(app, user_key); }

std::string IdentityHash(const Event& e) {
  if (!e.HasIdentity()) return "";
  std::string material;
  for (std::string_view part :
       {std::string_view(e.app_id), std::string_view(e.device_id), std::string_view(e.session_id),
        std::string_view(e.client_id), EventTypeName(e.type), std::string_view(e.name)}) {
    material.append(part).push_back('\0');
  }
  material.append(e.client_date);
  Sha256Digest d = Sha256(material);
  return HexEncode(d.data(), 16);
}

int64_t IdentityTime(std::string_view client_date) {
  if (client_date.size() >= 2 && client_date.front() == '"' && client_date.back() == '"') {
    const std::string_view text = client_date.substr(1, client_date.size() - 2);
    if (text.find('\\') != std::string_view::npos) return 0;  // escaped: not a date an SDK sends
    return ParseIsoTime(text).value_or(0);
  }
  double ms = 0;
  auto r = std::from_chars(client_date.data(), client_date.data() + client_date.size(), ms);
  if (r.ec != std::errc() || r.ptr != client_date.data() + client_date.size()) return 0;
  // Within +-10,000 years of 1970: anything else is no date.
  if (!(ms > -3.2e14 && ms < 3.2e14)) return 0;
  return static_cast<int64_t>(std::floor(ms));
}

void AppendIdentityRow(const Event& e, uint64_t node, uint64_t ord, std::string* out) {
  const std::string ident = IdentityHash(e);
  if (ident.empty()) return;
  Field(out, e.app_id);
  Signed(out, IdentityTime(e.client_date));
  Field(out, ident);
  Number(out, node);
  out->append(std::to_string(ord));
  out->push_back('\n');
}

void AppendEventRow(const Event& e, uint64_t node, uint64_t ord, std::string* out) {
  const std::string ident = IdentityHash(e);
  AppendEventRow(
      e, node, ord,
      {ident, SessionHash(e.app_id, e.device_id, e.session_id), UserHash(e.app_id, e.user_key)},
      out);
}

void AppendEventRow(const Event& e, uint64_t node, uint64_t ord, const RowHashes& hashes,
                    std::string* out) {
  Field(out, e.app_id);
  Number(out, node);
  Number(out, ord);
  Signed(out, e.time_ms);
  Number(out, static_cast<uint64_t>(e.type));
  Field(out, e.name);
  Field(out, e.device_id);
  Field(out, e.session_id);
  Number(out, hashes.session);
  Field(out, e.user_key);
  Number(out, hashes.user);
  Field(out, e.user_id);
  Field(out, e.anon_id);
  Field(out, e.client_id);
  Field(out, e.client_date);
  Field(out, hashes.ident);
  for (const std::string* s : {&e.platform, &e.os_version, &e.locale, &e.version, &e.module_version,
                               &e.arch, &e.client, &e.country}) {
    Field(out, *s);
  }
  Number(out, e.total_ram ? 1 : 0);
  Field(out, e.total_ram ? RoundTrip(*e.total_ram) : "0");
  Field(out, e.payload_json);
  std::string keys = "[", kinds = "[", texts = "[";
  for (size_t i = 0; i < e.props.size(); ++i) {
    if (i) {
      keys.push_back(',');
      kinds.push_back(',');
      texts.push_back(',');
    }
    keys.append(SqlQuote(e.props[i].first));
    kinds.append(std::to_string(static_cast<int>(e.props[i].second.kind)));
    texts.append(SqlQuote(e.props[i].second.text));
  }
  // As they are: ClickHouse reads an array field of TabSeparated input as
  // an array literal, without unescaping it first (and a quoted element
  // holds no raw tab or newline).
  for (std::string* array : {&keys, &kinds, &texts}) {
    array->push_back(']');
    out->append(*array);
    out->push_back('\t');
  }
  Field(out, e.error_hash);
  Field(out, NormalizePlatform(e.platform));
  Field(out, LanguageOf(e.locale));
  AppendTsv(out, e.total_ram ? RamBucket(*e.total_ram) : "");
  out->push_back('\n');
}

Result<Event> DecodeEventRow(const std::vector<std::string>& f, uint64_t* ord) {
  if (f.size() < 24) return Status::Internal("an events row has too few columns");
  Event e;
  int64_t n = 0;
  if (!ParseInt(f[0], &n)) return Status::Internal("bad ord in an events row");
  *ord = static_cast<uint64_t>(n);
  e.app_id = f[1];
  int64_t type = 0;
  if (!ParseInt(f[2], &type) || type < 1 || type > 7) {
    return Status::Internal("bad type in an events row");
  }
  e.type = static_cast<EventType>(type);
  e.name = f[3];
  e.client_id = f[4];
  e.device_id = f[5];
  e.session_id = f[6];
  e.user_key = f[7];
  e.user_id = f[8];
  e.anon_id = f[9];
  if (!ParseInt(f[10], &e.time_ms)) return Status::Internal("bad time in an events row");
  e.client_date = f[11];
  e.platform = f[12];
  e.os_version = f[13];
  e.locale = f[14];
  e.version = f[15];
  e.module_version = f[16];
  e.arch = f[17];
  e.client = f[18];
  e.country = f[19];
  if (f[20] == "1") e.total_ram = std::strtod(f[21].c_str(), nullptr);
  e.payload_json = f[22];
  e.error_hash = f[23];
  e.props = ParsePayloadProps(e.payload_json);
  return e;
}

uint64_t OrderClock::Next(int64_t now_ms) {
  if (now_ms > ms_) {
    ms_ = now_ms;
    counter_ = 0;
  } else if (counter_ >= (1u << 14)) {
    // More than 16,384 in one millisecond: borrow the next one.
    ++ms_;
    counter_ = 0;
  }
  return (static_cast<uint64_t>(ms_) << 22) | (slot_ << 14) | counter_++;
}

}  // namespace nucleon
