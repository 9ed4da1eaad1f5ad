#include "store/event_identity.h"

#include <string>

#include "core/crypto.h"

namespace nucleon {

int64_t EventIdentHash(const Event& e) {
  if (e.ident_hash) return *e.ident_hash;
  std::string material;
  material.reserve(e.client_id.size() + e.name.size() + e.client_date.size() + 8);
  material.append(e.client_id).push_back('\0');
  material.append(EventTypeName(e.type)).push_back('\0');
  material.append(e.name).push_back('\0');
  material.append(e.client_date);
  return StableHash64(material);
}

int64_t StoredIdent(int64_t hash) { return hash >> 16; }

int64_t TombstoneHash(std::string_view device_key, std::string_view session_key, int64_t ident) {
  std::string material(device_key);
  material.push_back('\0');
  material.append(session_key).push_back('\0');
  material.append(std::to_string(ident));
  return StableHash64(material);
}

std::array<int64_t, 2> EventTombstoneHashes(const Event& e) {
  const int64_t hash = EventIdentHash(e);
  return {TombstoneHash(e.device_id, e.session_id, StoredIdent(hash)),
          TombstoneHash(e.device_id, e.session_id, hash)};
}

}  // namespace nucleon
