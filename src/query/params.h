// Request parameters of the API: the query string merged with a POST body
// (JSON object or form), and the typed readers that turn them into values or
// a 400 naming the parameter. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/http_types.h"
#include "core/status.h"
#include "store/analytics.h"

namespace nucleon {

struct ApiRequest {
  std::vector<std::string> segments;          // decoded path segments after /api/v1/
  std::map<std::string, std::string> params;  // query string, then body (body wins)
};

// Parses the target's path segments and query string, and a POST body.
Result<ApiRequest> ParseApiRequest(const HttpRequest& request);

// The API token: `Authorization: <token>` or `Bearer <token>`, else `token` in the params.
std::string TokenOf(const HttpRequest& request, const ApiRequest& api);

// start/end (Unix seconds, inclusive) and utcOffset (minutes east of UTC).
Result<QueryRange> RangeParams(const ApiRequest& api);
// An integer parameter within [min, max], or `fallback` when absent.
Result<int64_t> IntParam(const ApiRequest& api, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max, const std::string& rule);

}  // namespace nucleon
