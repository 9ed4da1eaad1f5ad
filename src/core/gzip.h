// Gzip compression of a stream handed over in pieces (HTTP answers sent with
// Content-Encoding: gzip), over zlib. One object per stream; thread-compatible.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace nucleon {

class GzipStream {
 public:
  GzipStream();
  ~GzipStream();
  GzipStream(const GzipStream&) = delete;
  GzipStream& operator=(const GzipStream&) = delete;

  // The compressed bytes of `in` that are ready (possibly none: zlib keeps
  // some back until more comes or the end).
  std::string Add(std::string_view in);
  // The rest, with the gzip trailer. Nothing may be added after.
  std::string Finish();

 private:
  std::string Run(std::string_view in, int flush);
  struct State;
  std::unique_ptr<State> state_;
};

// Whether an Accept-Encoding header value accepts gzip (not with q=0).
bool AcceptsGzip(std::string_view accept_encoding);

}  // namespace nucleon
