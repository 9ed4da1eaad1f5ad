// Fuzz target: API authentication — the Authorization header (raw token or
// `Bearer <token>`, any spacing) and the POST body token (JSON or form).
// Input: the first line is the Authorization header ("" means no header), the
// second the Content-Type, the rest the body; a body makes it a POST. The
// token TokenOf reads must decide the answer of the real API: 200 when it
// grants the app, 401 when it grants nothing (the fuzz catalog's token grants
// no other app, so a 404 never comes from this app).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz/fuzz_server.h"
#include "query/params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace nucleon;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view authorization = TakeLine(&rest);
  const std::string_view content_type = TakeLine(&rest);
  HttpRequest request;
  request.method = rest.empty() ? "GET" : "POST";
  request.target = "/api/v1/apps/" + std::string(FuzzServer::kAppId) + "/live/users/count";
  if (!authorization.empty()) request.headers.emplace_back("authorization", authorization);
  if (!content_type.empty()) request.headers.emplace_back("content-type", content_type);
  request.body = std::string(rest);

  auto parsed = ParseApiRequest(request);
  if (!parsed.ok()) return 0;
  const std::string token = TokenOf(request, *parsed);
  const std::string granted = token.empty() ? std::string() : FuzzServer::Get().AppForToken(token);
  const HttpResponse response = FuzzServer::Get().Handle(request);
  const int expected = granted.empty() ? 401 : 200;
  if (response.status != expected) {
    std::fprintf(stderr, "auth_fuzzer: status %d, expected %d: %s\n", response.status, expected,
                 response.body.c_str());
    std::abort();
  }
  return 0;
}
