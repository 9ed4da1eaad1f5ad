#include "store/analytics.h"

#include "core/crypto.h"

namespace nucleon {

std::string UserDbId(std::string_view app_id, std::string_view user_key) {
  std::string material(app_id);
  material.push_back('/');
  material.append(user_key);
  Sha256Digest d = Sha256(material);
  return HexEncode(d.data(), 12);
}

}  // namespace nucleon
