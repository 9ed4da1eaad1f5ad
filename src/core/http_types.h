// Transport-neutral HTTP request and response, so that routing, auth and the
// API live outside the one translation unit that includes Boost.Beast (and can
// be fuzzed without a socket). Plain values; thread-compatible.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace nucleon {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, as received
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  std::string country;  // of the client address, when known (the address itself never travels)
  // An opaque key for the client address (a salted hash, for per-client rate
  // limits); empty when unknown.
  std::string client_key;
  // Whether the client reached us over TLS (a trusted proxy's
  // X-Forwarded-Proto: https): session cookies are then marked Secure.
  bool https = false;

  // First value of a header (name lowercased), or "".
  std::string_view Header(std::string_view name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return {};
  }
};

// Hands a streamed body's next piece to the connection; blocks while the
// client is behind, false once it is gone (the producer stops then).
using BodyWriter = std::function<bool(std::string_view chunk)>;

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // A body too large to hold (an export): when set, `body` is unused and the
  // answer is sent chunked while `stream` produces it, on a thread of its
  // own, with a bounded amount in flight. An error it returns cuts the
  // answer short (no last chunk), so that the client sees it incomplete.
  std::function<Status(const BodyWriter& write)> stream;
};

using Respond = std::function<void(HttpResponse)>;

// Something that answers HTTP requests, exactly once each, possibly later and
// on another thread (the API under /api/v1 is one).
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // `path` is the decoded-free path part of the target (no query string).
  virtual void Handle(const HttpRequest& request, std::string_view path, Respond respond) = 0;
};

// {"error": message} with the status that fits `status`.
HttpResponse ErrorResponse(const Status& status);
int HttpStatusOf(StatusCode code);
// Escapes a string for inclusion in JSON (quotes included).
std::string JsonQuote(std::string_view s);
// The same, appended to `out`.
void AppendJsonQuoted(std::string* out, std::string_view s);

}  // namespace nucleon
