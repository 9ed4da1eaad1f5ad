#include "core/status.h"

namespace nucleon {

std::string Status::ToString() const {
  if (ok()) return "ok";
  const char* name = "error";
  switch (code_) {
    case StatusCode::kOk: name = "ok"; break;
    case StatusCode::kInvalidArgument: name = "invalid argument"; break;
    case StatusCode::kUnauthenticated: name = "unauthenticated"; break;
    case StatusCode::kForbidden:
      name = "forbidden";
      break;
    case StatusCode::kUnimplemented:
      name = "unimplemented";
      break;
    case StatusCode::kNotFound: name = "not found"; break;
    case StatusCode::kMethodNotAllowed: name = "method not allowed"; break;
    case StatusCode::kPayloadTooLarge: name = "payload too large"; break;
    case StatusCode::kRateLimited: name = "rate limited"; break;
    case StatusCode::kInternal: name = "internal"; break;
    case StatusCode::kUnavailable: name = "unavailable"; break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace nucleon
