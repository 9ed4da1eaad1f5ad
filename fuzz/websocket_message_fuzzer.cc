// Fuzz target: a tracking WebSocket. The first line is the upgrade target
// (`/app/:appId/track` or `/:appId/`, checked by Router::TrackingSocketApp as
// the server checks it); the rest is the connection's messages, separated by
// form feeds (a byte raw JSON never holds). Each message goes through the
// Ingestor with a connection id, so live presence (LiveState) is fed as a
// real socket feeds it; the connection closes at the end of the input. Each
// message must be answered exactly once, and every ack must be exactly
// `{"reportedIds":[...]}`.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_server.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view target = nucleon::TakeLine(&rest);
  std::vector<std::string_view> messages;
  while (!rest.empty()) {
    size_t ff = rest.find('\f');
    messages.push_back(rest.substr(0, ff));
    rest.remove_prefix(ff == std::string_view::npos ? rest.size() : ff + 1);
  }
  nucleon::FuzzServer::Get().Socket(target, messages);
  return 0;
}
