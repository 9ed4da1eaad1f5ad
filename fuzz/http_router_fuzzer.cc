// Fuzz target: one HTTP request through the real Router and API handlers
// (health, metrics, tracking over HTTP, every /api/v1 resource with its
// routing, authentication and parameters), as the server hands them a parsed
// request. The input is the request in text form (see ParseRequestText):
//   METHOD TARGET\nname: value\n...\n\nBODY
// Every request must be answered exactly once, with valid JSON where JSON is
// announced (FuzzServer::Handle checks both).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nucleon::FuzzServer;
  nucleon::HttpRequest request =
      nucleon::ParseRequestText(std::string_view(reinterpret_cast<const char*>(data), size));
  request.country = "DE";
  (void)FuzzServer::Get().Handle(request);
  return 0;
}
