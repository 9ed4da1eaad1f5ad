// A server built without the dashboard (NUCLEON_WEB=OFF): no files to serve.
#include "server/web_assets.h"

namespace nucleon {

std::span<const WebAsset> WebAssets() { return {}; }

}  // namespace nucleon
