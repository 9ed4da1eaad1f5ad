// The compact form of an event row's variable part (the `body` column): the
// payload as binary members with dictionary key ids, the context fields as
// dictionary ids, the user and anonymous ids as sent (usually one flag each:
// equal to the user key, or to the user's anonymous id), the error hash as 16
// bytes and the RAM. Decoding gives back every field exactly as it was sent
// (the payload's JSON text byte for byte), so nothing is lost for the export.
//
//   body    := flags (varint) then the sections the flags announce, in order:
//   payload := count (varint), then per member: key id (varint), tag (byte), value
//              tags: 0 null, 1 false, 2 true, 3 int64 (zigzag varint),
//                    4 uint64 (varint), 5 other number (its text, as written),
//                    6 string (unescaped), 7 object or array (its JSON text)
//   raw     := JSON text (varint length + bytes), for a payload that is not an
//              object or would not come back byte for byte from the members
//   context := mask (varint, bit i = field i present), then the ids of the present fields
//   user_id, anon_id := inline text when not implied by a flag
//   error   := 16 bytes (a 32-hex-digit hash) or text
//   ram     := double (8 bytes)
//
// Thread-safety: pure functions over their arguments; the dictionary is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/event.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

// The context fields, in the order of the context mask.
enum class CtxField : uint8_t {
  kPlatform = 0,
  kOsVersion,
  kLocale,
  kVersion,
  kModuleVersion,
  kArch,
  kClient,
  kCountry,
  kCount
};
constexpr size_t kCtxFields = static_cast<size_t>(CtxField::kCount);

// The body split into its sections, viewing the blob (which must outlive it).
struct BodyParts {
  bool ok = true;                          // false: the blob is corrupt
  std::string_view payload;                // binary members (count first), empty when none
  std::string_view payload_raw;            // JSON text of a payload stored as text
  std::array<uint32_t, kCtxFields> ctx{};  // dictionary ids, 0 when absent
  bool has_ctx = false;
  // The ids as sent: set when stored inline, else implied by the flags.
  std::string_view user_id, anon_id;
  bool user_id_is_key = false, anon_id_is_key = false, anon_id_is_user_anon = false;
  std::string_view error_hash;  // 16 raw bytes (error_hash_raw) or the text
  bool error_hash_raw = false;
  std::optional<double> total_ram;
};

// Encodes `e`'s body into *out (cleared first; empty when the event has nothing
// to store there). `user_anon` is the anonymous id recorded on the event's user
// row (an anon_id equal to it costs one flag). Interns keys and context values.
void EncodeBody(const Event& e, std::string_view user_anon, StringDictionary& dict,
                std::string* out);

BodyParts ParseBody(std::string_view body);

// The fields of `e` that live in the body, as sent: payload_json, user_id,
// anon_id, the context fields, error_hash and total_ram. `user_key` and
// `user_anon` are those of the event's user row.
void DecodeBodyInto(const BodyParts& parts, const StringDictionary& dict, std::string_view user_key,
                    std::string_view user_anon, Event* e);

// A scalar payload member as rollups count it.
struct BodyProp {
  uint32_t key = 0;  // dictionary id
  PropValue value;
};
// The scalar members (strings, numbers, booleans) of the payload, in order,
// into *out (resized; its strings are reused to avoid allocation).
void DecodeBodyProps(const BodyParts& parts, StringDictionary& dict, std::vector<BodyProp>* out);

// The payload's JSON text, exactly as it was stored.
std::string BodyPayloadJson(const BodyParts& parts, const StringDictionary& dict);

// A client id (its JSON text) as the `client_id` column holds it: an integer
// when the text is a plain integer that renders back the same, else the text.
struct ClientIdColumn {
  bool is_int = false;
  int64_t int_value = 0;
  std::string_view text;
};
ClientIdColumn EncodeClientId(std::string_view json_text);

}  // namespace nucleon
