#include "query/params.h"

#include <boost/json.hpp>
#include <boost/url.hpp>
#include <charconv>

namespace nucleon {

namespace {

std::optional<int64_t> ParseInt(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  auto res = std::from_chars(s.data(), s.data() + s.size(), v);
  if (res.ec != std::errc() || res.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

void ReadForm(std::string_view body, std::map<std::string, std::string>* out) {
  if (!boost::urls::parse_query(body)) return;  // malformed forms carry nothing
  boost::urls::params_view params(body);     // decodes %XX and '+' as space
  for (auto p : params) (*out)[p.key] = p.has_value ? p.value : "";
}

void ReadJson(std::string_view body, std::map<std::string, std::string>* out) {
  boost::system::error_code ec;
  boost::json::parse_options opts;
  opts.max_depth = 32;
  boost::json::value v = boost::json::parse(body, ec, {}, opts);
  if (ec || !v.is_object()) return;
  for (const auto& kv : v.get_object()) {
    const auto& val = kv.value();
    if (val.is_string()) (*out)[std::string(kv.key())] = std::string(val.get_string());
    else if (val.is_int64()) (*out)[std::string(kv.key())] = std::to_string(val.get_int64());
    else if (val.is_uint64()) (*out)[std::string(kv.key())] = std::to_string(val.get_uint64());
    else if (val.is_double()) (*out)[std::string(kv.key())] = boost::json::serialize(val);
  }
}

}  // namespace

Result<ApiRequest> ParseApiRequest(const HttpRequest& request) {
  auto url = boost::urls::parse_origin_form(request.target);
  if (!url) return Status::InvalidArgument("malformed request target");
  ApiRequest out;
  bool skipped_prefix = false;
  std::vector<std::string> all;
  for (auto seg : url->segments()) all.push_back(seg);
  // Drop "api", "v1".
  if (all.size() >= 2 && all[0] == "api" && all[1] == "v1") {
    out.segments.assign(all.begin() + 2, all.end());
    skipped_prefix = true;
  }
  if (!skipped_prefix) out.segments = std::move(all);
  while (!out.segments.empty() && out.segments.back().empty()) out.segments.pop_back();
  for (auto p : url->params()) out.params[p.key] = p.has_value ? p.value : "";
  // A token travels in a header or a POST body, never in a URL that access
  // logs and browser histories keep.
  out.params.erase("token");
  if (request.method == "POST" && !request.body.empty()) {
    std::string_view type = request.Header("content-type");
    if (type.find("application/x-www-form-urlencoded") != std::string_view::npos) {
      ReadForm(request.body, &out.params);
    } else {
      ReadJson(request.body, &out.params);
    }
  }
  return out;
}

std::string TokenOf(const HttpRequest& request, const ApiRequest& api) {
  std::string_view auth = request.Header("authorization");
  while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
  while (!auth.empty() && auth.back() == ' ') auth.remove_suffix(1);
  if (auth.size() > 7 && (auth.substr(0, 7) == "Bearer " || auth.substr(0, 7) == "bearer ")) {
    auth.remove_prefix(7);
    while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
  }
  if (!auth.empty()) return std::string(auth);
  auto it = api.params.find("token");
  return it == api.params.end() ? std::string() : it->second;
}

Result<int64_t> IntParam(const ApiRequest& api, const std::string& name, int64_t fallback,
                         int64_t min, int64_t max, const std::string& rule) {
  auto it = api.params.find(name);
  if (it == api.params.end()) return fallback;
  auto v = ParseInt(it->second);
  if (!v || *v < min || *v > max) return Status::InvalidArgument(name + " must be " + rule);
  return *v;
}

Result<QueryRange> RangeParams(const ApiRequest& api) {
  // Seconds within ±3,000 years keep every millisecond computation in range.
  constexpr int64_t kLimit = 95000000000LL;
  QueryRange r;
  int64_t bounds[2];
  const char* names[] = {"start", "end"};
  for (int i = 0; i < 2; ++i) {
    auto it = api.params.find(names[i]);
    if (it == api.params.end() || it->second.empty()) {
      return Status::InvalidArgument(std::string(names[i]) + " is required");
    }
    auto v = ParseInt(it->second);
    if (!v || *v < -kLimit || *v > kLimit) {
      return Status::InvalidArgument(std::string(names[i]) + " must be a Unix timestamp in seconds");
    }
    bounds[i] = *v;
  }
  if (bounds[1] < bounds[0]) return Status::InvalidArgument("end must not be before start");
  auto offset = IntParam(api, "utcOffset", 0, -720, 840, "an integer between -720 and 840");
  if (!offset.ok()) return offset.status();
  r.from_ms = bounds[0] * 1000;
  r.to_ms = bounds[1] * 1000 + 999;
  r.utc_offset_min = static_cast<int>(*offset);
  return r;
}

}  // namespace nucleon
