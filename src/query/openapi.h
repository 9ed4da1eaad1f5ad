// The OpenAPI 3.1 description of the API (docs/openapi.json, embedded at build time).
#pragma once

#include <string_view>

namespace nucleon {

std::string_view OpenApiJson();

}  // namespace nucleon
