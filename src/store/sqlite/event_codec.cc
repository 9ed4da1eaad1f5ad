#include "store/sqlite/event_codec.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <vector>

#include "core/normalize.h"
#include "store/sqlite/byte_io.h"

namespace nucleon {

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
  kNull = 0,
  kFalse = 1,
  kTrue = 2,
  kInt = 3,
  kUint = 4,
  kNumberText = 5,
  kString = 6,
  kJson = 7,
};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// ---- A small reader of one JSON object's members, keeping each value's text.
// Numbers are kept as written (a parse and print could change a double's
// text), strings unescaped, nested values as their text.
struct Member {
  std::string key;  // unescaped
  enum class Kind { kNull, kFalse, kTrue, kNumber, kString, kNested } kind = Kind::kNull;
  std::string_view raw;  // numbers and nested values: their text
  std::string str;       // strings: unescaped
};

class ObjectScanner {
 public:
  explicit ObjectScanner(std::string_view s) : s_(s) {}

  bool Scan(std::vector<Member>* out) {
    out->clear();
    Ws();
    if (!Eat('{')) return false;
    Ws();
    if (Eat('}')) return Ws(), p_ == s_.size();
    for (;;) {
      Member m;
      Ws();
      if (!String(&m.key)) return false;
      Ws();
      if (!Eat(':')) return false;
      Ws();
      if (!Value(&m)) return false;
      out->push_back(std::move(m));
      Ws();
      if (Eat(',')) continue;
      if (!Eat('}')) return false;
      Ws();
      return p_ == s_.size();
    }
  }

 private:
  void Ws() {
    while (p_ < s_.size() && (s_[p_] == ' ' || s_[p_] == '\t' || s_[p_] == '\n' || s_[p_] == '\r'))
      ++p_;
  }
  bool Eat(char c) {
    if (p_ < s_.size() && s_[p_] == c) {
      ++p_;
      return true;
    }
    return false;
  }
  static void Utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool Hex4(uint32_t* v) {
    if (s_.size() - p_ < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[p_++];
      const int d = (c >= '0' && c <= '9')   ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
      if (d < 0) return false;
      *v = *v * 16 + static_cast<uint32_t>(d);
    }
    return true;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    out->clear();
    while (p_ < s_.size()) {
      const char c = s_[p_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (p_ >= s_.size()) return false;
      const char e = s_[p_++];
      switch (e) {
        case '"':
          out->push_back('"');
          break;
        case '\\':
          out->push_back('\\');
          break;
        case '/':
          out->push_back('/');
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            uint32_t lo = 0;
            if (!Eat('\\') || !Eat('u') || !Hex4(&lo) || lo < 0xDC00 || lo >= 0xE000) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return false;
          }
          Utf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Number(std::string_view* raw) {
    const size_t start = p_;
    Eat('-');
    if (p_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[p_]))) return false;
    if (s_[p_] == '0') {
      ++p_;
    } else {
      while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) ++p_;
    }
    if (Eat('.')) {
      if (p_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[p_]))) return false;
      while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) ++p_;
    }
    if (p_ < s_.size() && (s_[p_] == 'e' || s_[p_] == 'E')) {
      ++p_;
      if (!Eat('+')) Eat('-');
      if (p_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[p_]))) return false;
      while (p_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[p_]))) ++p_;
    }
    *raw = s_.substr(start, p_ - start);
    return true;
  }
  // Skips a nested object or array, strings included.
  bool Nested(std::string_view* raw) {
    const size_t start = p_;
    int depth = 0;
    while (p_ < s_.size()) {
      const char c = s_[p_];
      if (c == '"') {
        std::string ignored;
        if (!String(&ignored)) return false;
        continue;
      }
      ++p_;
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) {
          *raw = s_.substr(start, p_ - start);
          return true;
        }
      }
    }
    return false;
  }
  bool Literal(std::string_view word) {
    if (s_.substr(p_, word.size()) != word) return false;
    p_ += word.size();
    return true;
  }
  bool Value(Member* m) {
    if (p_ >= s_.size()) return false;
    const char c = s_[p_];
    if (c == '"') {
      m->kind = Member::Kind::kString;
      return String(&m->str);
    }
    if (c == '{' || c == '[') {
      m->kind = Member::Kind::kNested;
      return Nested(&m->raw);
    }
    if (c == 't') return m->kind = Member::Kind::kTrue, Literal("true");
    if (c == 'f') return m->kind = Member::Kind::kFalse, Literal("false");
    if (c == 'n') return m->kind = Member::Kind::kNull, Literal("null");
    m->kind = Member::Kind::kNumber;
    return Number(&m->raw);
  }

  std::string_view s_;
  size_t p_ = 0;
};

// The whole of [begin, end) as an integer of type T, within its range.
template <typename T>
bool Parses(const char* begin, const char* end, T* out) {
  const auto res = std::from_chars(begin, end, *out);
  return res.ec == std::errc() && res.ptr == end;
}

bool IsPlainInteger(std::string_view t) {
  if (t.empty()) return false;
  for (size_t i = t.front() == '-' ? 1 : 0; i < t.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
  }
  return t.size() > (t.front() == '-' ? 1u : 0u);
}

// A JSON string as the payload text holds it: quotes, backslashes and control
// characters escaped, everything else (UTF-8 included) as it is.
void AppendEscaped(std::string_view s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (u < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[u >> 4]);
          out->push_back(kHex[u & 15]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

// The binary members of a payload (count first) back to JSON text; false when corrupt.
bool PayloadText(std::string_view bin, const StringDictionary& dict, std::string* out) {
  ByteReader r(bin);
  const uint64_t count = r.Varint();
  out->clear();
  out->push_back('{');
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    if (i) out->push_back(',');
    AppendEscaped(dict.Text(static_cast<uint32_t>(r.Varint())), out);
    out->push_back(':');
    char buf[24];
    switch (r.Byte()) {
      case kNull:
        out->append("null");
        break;
      case kFalse:
        out->append("false");
        break;
      case kTrue:
        out->append("true");
        break;
      case kInt:
        out->append(buf, std::to_chars(buf, buf + sizeof buf, r.Signed()).ptr);
        break;
      case kUint:
        out->append(buf, std::to_chars(buf, buf + sizeof buf, r.Varint()).ptr);
        break;
      case kNumberText:
      case kJson:
        out->append(r.String());
        break;
      case kString:
        AppendEscaped(r.String(), out);
        break;
      default:
        return false;
    }
  }
  out->push_back('}');
  return r.ok() && r.done();
}

// Encodes the members of a JSON object text; false when it is not one (or
// would not come back byte for byte: then the text is stored as it is).
bool EncodePayload(std::string_view text, StringDictionary& dict, std::string* out) {
  thread_local std::vector<Member> members;
  ObjectScanner scanner(text);
  if (!scanner.Scan(&members)) return false;
  out->clear();
  ByteWriter w(out);
  w.Varint(members.size());
  for (const Member& m : members) {
    w.Varint(dict.Intern(m.key));
    switch (m.kind) {
      case Member::Kind::kNull:
        w.Byte(kNull);
        break;
      case Member::Kind::kFalse:
        w.Byte(kFalse);
        break;
      case Member::Kind::kTrue:
        w.Byte(kTrue);
        break;
      case Member::Kind::kString:
        w.Byte(kString);
        w.String(m.str);
        break;
      case Member::Kind::kNested:
        w.Byte(kJson);
        w.String(m.raw);
        break;
      case Member::Kind::kNumber: {
        int64_t i = 0;
        uint64_t u = 0;
        const char* end = m.raw.data() + m.raw.size();
        if (IsPlainInteger(m.raw) && Parses(m.raw.data(), end, &i)) {
          w.Byte(kInt);
          w.Signed(i);
        } else if (IsPlainInteger(m.raw) && Parses(m.raw.data(), end, &u)) {
          w.Byte(kUint);
          w.Varint(u);
        } else {
          w.Byte(kNumberText);
          w.String(m.raw);
        }
        break;
      }
    }
  }
  thread_local std::string check;
  return PayloadText(*out, dict, &check) && check == text;
}

// A scalar member as a property (as store/payload_props.h ScalarProp renders it).
bool MemberProp(uint8_t tag, std::string_view text, int64_t i, uint64_t u, PropValue* v) {
  char buf[24];
  switch (tag) {
    case kFalse:
    case kTrue:
      v->kind = PropValue::Kind::kBool;
      v->text.assign(tag == kTrue ? "true" : "false");
      return true;
    case kInt:
      v->kind = PropValue::Kind::kNumber;
      v->text.assign(buf, std::to_chars(buf, buf + sizeof buf, i).ptr);
      return true;
    case kUint:
      v->kind = PropValue::Kind::kNumber;
      v->text.assign(buf, std::to_chars(buf, buf + sizeof buf, u).ptr);
      return true;
    case kNumberText: {
      double d = 0;
      const auto res = std::from_chars(text.data(), text.data() + text.size(), d);
      if (res.ec != std::errc() || !std::isfinite(d)) return false;
      v->kind = PropValue::Kind::kNumber;
      v->text = RenderNumber(d);
      return true;
    }
    case kString:
      v->kind = PropValue::Kind::kString;
      v->text.assign(text);
      return true;
    default:
      return false;
  }
}

}  // namespace

void EncodeBody(const Event& e, std::string_view user_anon, StringDictionary& dict,
                std::string* out) {
  out->clear();
  uint32_t flags = 0;
  thread_local std::string payload;
  payload.clear();
  if (!e.payload_json.empty() && e.payload_json != "{}") {
    if (EncodePayload(e.payload_json, dict, &payload)) {
      flags |= kPayload;
    } else {
      payload.clear();
      ByteWriter(&payload).String(e.payload_json);
      flags |= kPayloadRaw;
    }
  }
  const std::string_view ctx_values[kCtxFields] = {
      e.platform, e.os_version, e.locale, e.version, e.module_version, e.arch, e.client, e.country};
  uint64_t mask = 0;
  for (size_t i = 0; i < kCtxFields; ++i) {
    if (!ctx_values[i].empty()) mask |= uint64_t{1} << i;
  }
  if (mask) flags |= kContext;
  if (!e.user_id.empty()) flags |= e.user_id == e.user_key ? kUserIdIsKey : kUserIdInline;
  if (!e.anon_id.empty()) {
    flags |= e.anon_id == e.user_key                          ? kAnonIsKey
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
    case kNull:
    case kFalse:
    case kTrue:
      return true;
    case kInt:
    case kUint:
      r.Varint();
      return r.ok();
    case kNumberText:
    case kString:
    case kJson:
      r.String();
      return r.ok();
    default:
      return false;
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
  std::string* ctx_fields[kCtxFields] = {&e->platform, &e->os_version,     &e->locale,
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
      int64_t iv = 0;
      uint64_t uv = 0;
      std::string_view text;
      if (tag == kInt)
        iv = r.Signed();
      else if (tag == kUint)
        uv = r.Varint();
      else if (tag == kNumberText || tag == kString || tag == kJson)
        text = r.String();
      else if (tag > kJson)
        break;
      BodyProp& bp = next();
      if (!MemberProp(tag, text, iv, uv, &bp.value)) {
        --n;
        continue;
      }
      bp.key = key;
    }
    if (!r.ok()) n = 0;
  } else if (!p.payload_raw.empty()) {
    std::vector<Member> members;
    if (ObjectScanner(p.payload_raw).Scan(&members)) {
      for (const Member& m : members) {
        BodyProp& bp = next();
        bool ok = false;
        switch (m.kind) {
          case Member::Kind::kFalse:
            ok = MemberProp(kFalse, {}, 0, 0, &bp.value);
            break;
          case Member::Kind::kTrue:
            ok = MemberProp(kTrue, {}, 0, 0, &bp.value);
            break;
          case Member::Kind::kString:
            ok = MemberProp(kString, m.str, 0, 0, &bp.value);
            break;
          case Member::Kind::kNumber: {
            int64_t iv = 0;
            uint64_t uv = 0;
            const char* end = m.raw.data() + m.raw.size();
            if (IsPlainInteger(m.raw) && Parses(m.raw.data(), end, &iv)) {
              ok = MemberProp(kInt, {}, iv, 0, &bp.value);
            } else if (IsPlainInteger(m.raw) && Parses(m.raw.data(), end, &uv)) {
              ok = MemberProp(kUint, {}, 0, uv, &bp.value);
            } else {
              ok = MemberProp(kNumberText, m.raw, 0, 0, &bp.value);
            }
            break;
          }
          default:
            break;
        }
        if (!ok) {
          --n;
          continue;
        }
        bp.key = dict.Intern(m.key);
      }
    }
  }
  out->resize(n);
}

std::string BodyPayloadJson(const BodyParts& p, const StringDictionary& dict) {
  if (!p.payload_raw.empty()) return std::string(p.payload_raw);
  if (p.payload.empty()) return "{}";
  std::string out;
  if (!PayloadText(p.payload, dict, &out)) return "{}";
  return out;
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
