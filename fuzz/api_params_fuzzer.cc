// Fuzz target: the API's request parameters — the target's path segments and
// query string (Boost.URL: percent-decoding, '+', empty and repeated keys)
// merged with a POST body as JSON or as a form — and the typed readers every
// resource uses on them (time range and UTC offset, page and limit). The
// input is a request in text form (see ParseRequestText), so the method and
// the content type are fuzzed too. Checks what the rest of the API relies
// on: no trailing empty segment, no token taken from the URL, a range that is
// ordered and within the documented bounds.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "fuzz/fuzz_server.h"
#include "query/params.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "api_params_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nucleon;
  const HttpRequest request =
      ParseRequestText(std::string_view(reinterpret_cast<const char*>(data), size));
  auto parsed = ParseApiRequest(request);
  if (!parsed.ok()) return 0;
  const ApiRequest& api = *parsed;
  if (!api.segments.empty() && api.segments.back().empty()) Fail("trailing empty segment");
  if (request.method != "POST" && api.params.count("token")) Fail("token read from the URL");
  if (auto range = RangeParams(api); range.ok()) {
    if (range->to_ms < range->from_ms) Fail("range ends before it starts");
    if (range->utc_offset_min < -720 || range->utc_offset_min > 840) Fail("offset out of bounds");
  }
  if (auto page = IntParam(api, "page", 1, 1, 1000000, "a positive integer"); page.ok()) {
    if (*page < 1 || *page > 1000000) Fail("page out of bounds");
  }
  (void)IntParam(api, "limit", 50, 1, 1000, "an integer between 1 and 1000");
  (void)TokenOf(request, api);
  return 0;
}
