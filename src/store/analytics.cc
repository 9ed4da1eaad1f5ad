#include "store/analytics.h"

#include <algorithm>

#include "core/crypto.h"

namespace nucleon {

void CompleteFromInitContext(const Event& c, Event* e) {
  for (auto [field, from] : {std::pair{&e->platform, &c.platform},
                             {&e->os_version, &c.os_version},
                             {&e->locale, &c.locale},
                             {&e->version, &c.version},
                             {&e->module_version, &c.module_version},
                             {&e->arch, &c.arch},
                             {&e->country, &c.country}}) {
    if (field->empty()) *field = *from;
  }
  if (!e->total_ram) e->total_ram = c.total_ram;
}

void SortErrorGroups(std::vector<ErrorGroup>* groups) {
  std::sort(groups->begin(), groups->end(), [](const ErrorGroup& a, const ErrorGroup& b) {
    return a.count != b.count ? a.count > b.count : a.name < b.name;
  });
}

double MeanSessionSeconds(const SessionDay& day) {
  return static_cast<double>(day.seconds) / static_cast<double>(std::max<int64_t>(1, day.sessions));
}

UserDbIdBytes UserDbIdOf(std::string_view app_id, std::string_view user_key) {
  std::string material(app_id);
  material.push_back('/');
  material.append(user_key);
  const Sha256Digest d = Sha256(material);
  UserDbIdBytes id;
  std::copy_n(d.begin(), id.size(), id.begin());
  return id;
}

std::string UserDbIdText(const UserDbIdBytes& id) { return HexEncode(id.data(), id.size()); }

std::string UserDbId(std::string_view app_id, std::string_view user_key) {
  return UserDbIdText(UserDbIdOf(app_id, user_key));
}

}  // namespace nucleon
