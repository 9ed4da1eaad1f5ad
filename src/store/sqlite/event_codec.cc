#include "store/sqlite/event_codec.h"

#include <boost/json.hpp>

#include <charconv>
#include <cmath>

#include "core/normalize.h"
#include "store/sqlite/byte_io.h"

namespace nucleon {

namespace json = boost::json;

namespace {

enum Flag : uint32_t {
  kPayload = 1u << 0,
  kPayloadRaw = 1u << 1,
  kContext = 1u << 2,
  kUserIdInline = 1u << 3,
  kUserIdIsKey = 1u << 4,
  kAnonInline = 1u << 5,
  kAnonIsKey = 1u << 6,
  kAnonIsUserAnon = 1u << 7,
  kErrorHashRaw = 1u << 8,
  kErrorHashText = 1u << 9,
  kRam = 1u << 10,
};

enum Tag : uint8_t {
  kNull = 0, kFalse = 1, kTrue = 2, kInt = 3, kUint = 4, kDouble = 5, kString = 6, kJson = 7,
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Encodes a JSON object's members; false when `text` is not an object.
bool EncodePayload(std::string_view text, StringDictionary& dict, ByteWriter& w) {
  unsigned char buffer[8192];
  json::monotonic_resource mr(buffer, sizeof buffer);
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, &mr);
  if (ec || !v.is_object()) return false;
  const json::object& obj = v.get_object();
  w.Varint(obj.size());
  for (const auto& kv : obj) {
    w.Varint(dict.Intern(kv.key()));
    const json::value& val = kv.value();
    switch (val.kind()) {
      case json::kind::null: w.Byte(kNull); break;
      case json::kind::bool_: w.Byte(val.get_bool() ? kTrue : kFalse); break;
      case json::kind::int64: w.Byte(kInt); w.Signed(val.get_int64()); break;
      case json::kind::uint64: w.Byte(kUint); w.Varint(val.get_uint64()); break;
      case json::kind::double_: w.Byte(kDouble); w.Double(val.get_double()); break;
      case json::kind::string: w.Byte(kString); w.String(val.get_string()); break;
      default: w.Byte(kJson); w.String(json::serialize(val)); break;
    }
  }
  return true;
}

}  // namespace

void EncodeBody(const Event& e, std::string_view user_anon, StringDictionary& dict,
                std::string* out) {
  out->clear();
  uint32_t flags = 0;
  std::string payload;
  if (!e.payload_json.empty() && e.payload_json != "{}") {
    ByteWriter pw(&payload);
    if (EncodePayload(e.payload_json, dict, pw)) {
      flags |= kPayload;
    } else {
      payload.clear();
      ByteWriter(&payload).String(e.payload_json);
      flags |= kPayloadRaw;
    }
  }
  const std::string_view ctx_values[kCtxFields] = {e.platform, e.os_version,    e.locale,
                                                   e.version,  e.module_version, e.arch,
                                                   e.client,   e.country};
  uint64_t mask = 0;
  for (size_t i = 0; i < kCtxFields; ++i) {
    if (!ctx_values[i].empty()) mask |= uint64_t{1} << i;
  }
  if (mask) flags |= kContext;
  if (!e.user_id.empty()) flags |= e.user_id == e.user_key ? kUserIdIsKey : kUserIdInline;
  if (!e.anon_id.empty()) {
    flags |= e.anon_id == e.user_key ? kAnonIsKey
             : (!user_anon.empty() && e.anon_id == user_anon) ? kAnonIsUserAnon
                                                              : kAnonInline;
  }
  bool hash_raw = e.error_hash.size() == 32;
  for (char c : e.error_hash) hash_raw = hash_raw && HexValue(c) >= 0;
  if (!e.error_hash.empty()) flags |= hash_raw ? kErrorHashRaw : kErrorHashText;
  if (e.total_ram) flags |= kRam;
  if (flags == 0) return;

  ByteWriter w(out);
  w.Varint(flags);
  w.Bytes(payload);
  if (mask) {
    w.Varint(mask);
    for (size_t i = 0; i < kCtxFields; ++i) {
      if (mask & (uint64_t{1} << i)) w.Varint(dict.Intern(ctx_values[i]));
    }
  }
  if (flags & kUserIdInline) w.String(e.user_id);
  if (flags & kAnonInline) w.String(e.anon_id);
  if (flags & kErrorHashRaw) {
    for (size_t i = 0; i < 32; i += 2) {
      w.Byte(static_cast<uint8_t>(HexValue(e.error_hash[i]) * 16 + HexValue(e.error_hash[i + 1])));
    }
  } else if (flags & kErrorHashText) {
    w.String(e.error_hash);
  }
  if (flags & kRam) w.Double(*e.total_ram);
}

namespace {

// Skips one payload member's value; false on corruption.
bool SkipValue(ByteReader& r, uint8_t tag) {
  switch (tag) {
    case kNull: case kFalse: case kTrue: return true;
    case kInt: case kUint: r.Varint(); return r.ok();
    case kDouble: r.Fixed64(); return r.ok();
    case kString: case kJson: r.String(); return r.ok();
    default: return false;
  }
}

}  // namespace

BodyParts ParseBody(std::string_view body) {
  BodyParts p;
  if (body.empty()) return p;
  ByteReader r(body);
  const uint64_t flags = r.Varint();
  if (flags & kPayload) {
    const char* start = body.data() + (body.size() - r.remaining());
    const uint64_t n = r.Varint();
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      r.Varint();
      if (!SkipValue(r, r.Byte())) {
        p.ok = false;
        return p;
      }
    }
    const char* end = body.data() + (body.size() - r.remaining());
    p.payload = std::string_view(start, static_cast<size_t>(end - start));
  } else if (flags & kPayloadRaw) {
    p.payload_raw = r.String();
  }
  if (flags & kContext) {
    p.has_ctx = true;
    const uint64_t mask = r.Varint();
    for (size_t i = 0; i < kCtxFields; ++i) {
      if (mask & (uint64_t{1} << i)) p.ctx[i] = static_cast<uint32_t>(r.Varint());
    }
  }
  if (flags & kUserIdInline) p.user_id = r.String();
  p.user_id_is_key = flags & kUserIdIsKey;
  if (flags & kAnonInline) p.anon_id = r.String();
  p.anon_id_is_key = flags & kAnonIsKey;
  p.anon_id_is_user_anon = flags & kAnonIsUserAnon;
  if (flags & kErrorHashRaw) {
    p.error_hash = r.Bytes(16);
    p.error_hash_raw = true;
  } else if (flags & kErrorHashText) {
    p.error_hash = r.String();
  }
  if (flags & kRam) p.total_ram = r.Double();
  p.ok = r.ok();
  return p;
}

void DecodeBodyInto(const BodyParts& p, const StringDictionary& dict, std::string_view user_key,
                    std::string_view user_anon, Event* e) {
  e->payload_json = BodyPayloadJson(p, dict);
  std::string* ctx_fields[kCtxFields] = {&e->platform, &e->os_version,    &e->locale,
                                         &e->version,  &e->module_version, &e->arch,
                                         &e->client,   &e->country};
  for (size_t i = 0; i < kCtxFields; ++i) ctx_fields[i]->assign(dict.Text(p.ctx[i]));
  e->user_id.assign(p.user_id_is_key ? user_key : p.user_id);
  e->anon_id.assign(p.anon_id_is_key ? user_key : p.anon_id_is_user_anon ? user_anon : p.anon_id);
  if (p.error_hash_raw) {
    static const char kHex[] = "0123456789abcdef";
    e->error_hash.clear();
    for (char c : p.error_hash) {
      const auto b = static_cast<uint8_t>(c);
      e->error_hash.push_back(kHex[b >> 4]);
      e->error_hash.push_back(kHex[b & 15]);
    }
  } else {
    e->error_hash.assign(p.error_hash);
  }
  e->total_ram = p.total_ram;
}

void DecodeBodyProps(const BodyParts& p, StringDictionary& dict, std::vector<BodyProp>* out) {
  size_t n = 0;
  auto next = [&]() -> BodyProp& {
    if (n == out->size()) out->emplace_back();
    return (*out)[n++];
  };
  if (!p.payload.empty()) {
    ByteReader r(p.payload);
    const uint64_t count = r.Varint();
    for (uint64_t i = 0; i < count && r.ok(); ++i) {
      const auto key = static_cast<uint32_t>(r.Varint());
      const uint8_t tag = r.Byte();
      switch (tag) {
        case kFalse: case kTrue: {
          BodyProp& bp = next();
          bp.key = key;
          bp.value.kind = PropValue::Kind::kBool;
          bp.value.text.assign(tag == kTrue ? "true" : "false");
          break;
        }
        case kInt: case kUint: {
          char buf[24];
          const auto res = tag == kInt ? std::to_chars(buf, buf + sizeof buf, r.Signed())
                                       : std::to_chars(buf, buf + sizeof buf, r.Varint());
          BodyProp& bp = next();
          bp.key = key;
          bp.value.kind = PropValue::Kind::kNumber;
          bp.value.text.assign(buf, res.ptr);
          break;
        }
        case kDouble: {
          const double d = r.Double();
          if (!std::isfinite(d)) break;
          BodyProp& bp = next();
          bp.key = key;
          bp.value.kind = PropValue::Kind::kNumber;
          bp.value.text = RenderNumber(d);
          break;
        }
        case kString: {
          const std::string_view s = r.String();
          BodyProp& bp = next();
          bp.key = key;
          bp.value.kind = PropValue::Kind::kString;
          bp.value.text.assign(s);
          break;
        }
        default:
          SkipValue(r, tag);
          break;
      }
    }
    if (!r.ok()) n = 0;
  } else if (!p.payload_raw.empty()) {
    boost::system::error_code ec;
    json::value v = json::parse(p.payload_raw, ec);
    if (!ec && v.is_object()) {
      for (const auto& kv : v.get_object()) {
        const json::value& val = kv.value();
        std::optional<PropValue> pv;
        if (val.is_string()) pv = PropValue{PropValue::Kind::kString, std::string(val.get_string())};
        else if (val.is_bool()) pv = PropValue{PropValue::Kind::kBool, val.get_bool() ? "true" : "false"};
        else if (val.is_int64()) pv = PropValue{PropValue::Kind::kNumber, std::to_string(val.get_int64())};
        else if (val.is_uint64()) pv = PropValue{PropValue::Kind::kNumber, std::to_string(val.get_uint64())};
        else if (val.is_double() && std::isfinite(val.get_double())) {
          pv = PropValue{PropValue::Kind::kNumber, RenderNumber(val.get_double())};
        }
        if (!pv) continue;
        BodyProp& bp = next();
        bp.key = dict.Intern(kv.key());
        bp.value = std::move(*pv);
      }
    }
  }
  out->resize(n);
}

std::string BodyPayloadJson(const BodyParts& p, const StringDictionary& dict) {
  if (!p.payload_raw.empty()) return std::string(p.payload_raw);
  if (p.payload.empty()) return "{}";
  json::object obj;
  ByteReader r(p.payload);
  const uint64_t count = r.Varint();
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    const std::string_view key = dict.Text(static_cast<uint32_t>(r.Varint()));
    const uint8_t tag = r.Byte();
    json::value v;
    switch (tag) {
      case kNull: v = nullptr; break;
      case kFalse: v = false; break;
      case kTrue: v = true; break;
      case kInt: v = r.Signed(); break;
      case kUint: v = r.Varint(); break;
      case kDouble: v = r.Double(); break;
      case kString: v = json::string(r.String()); break;
      case kJson: {
        boost::system::error_code ec;
        v = json::parse(r.String(), ec);
        if (ec) v = nullptr;
        break;
      }
      default: r.Byte(); break;  // corrupt: the reader fails below
    }
    obj.insert_or_assign(key, std::move(v));
  }
  if (!r.ok()) return "{}";
  return json::serialize(obj);
}

ClientIdColumn EncodeClientId(std::string_view text) {
  ClientIdColumn c;
  c.text = text;
  if (text.empty() || text.size() > 18) return c;
  int64_t v = 0;
  auto res = std::from_chars(text.data(), text.data() + text.size(), v);
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) return c;
  char buf[24];
  auto back = std::to_chars(buf, buf + sizeof buf, v);
  if (std::string_view(buf, static_cast<size_t>(back.ptr - buf)) != text) return c;
  c.is_int = true;
  c.int_value = v;
  return c;
}

}  // namespace nucleon
