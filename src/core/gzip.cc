#include "core/gzip.h"

#include <zlib.h>

#include <cctype>

namespace nucleon {

struct GzipStream::State {
  z_stream z{};
  bool open = false;
};

GzipStream::GzipStream() : state_(std::make_unique<State>()) {
  // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
  state_->open = deflateInit2(&state_->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                              Z_DEFAULT_STRATEGY) == Z_OK;
}

GzipStream::~GzipStream() {
  if (state_->open) deflateEnd(&state_->z);
}

std::string GzipStream::Run(std::string_view in, int flush) {
  std::string out;
  if (!state_->open) return out;
  z_stream& z = state_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  char buffer[32 * 1024];
  do {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof(buffer);
    const int rc = deflate(&z, flush);
    if (rc == Z_STREAM_ERROR) break;
    out.append(buffer, sizeof(buffer) - z.avail_out);
  } while (z.avail_out == 0 || z.avail_in > 0);
  return out;
}

std::string GzipStream::Add(std::string_view in) { return Run(in, Z_NO_FLUSH); }

std::string GzipStream::Finish() { return Run({}, Z_FINISH); }

bool AcceptsGzip(std::string_view header) {
  for (size_t at = 0; at < header.size();) {
    size_t comma = header.find(',', at);
    if (comma == std::string_view::npos) comma = header.size();
    std::string item;
    for (char c : header.substr(at, comma - at)) {
      if (c != ' ' && c != '\t')
        item += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    at = comma + 1;
    const size_t semi = item.find(';');
    const std::string coding = item.substr(0, semi);
    if (coding != "gzip" && coding != "*") continue;
    if (semi != std::string::npos) {
      const std::string params = item.substr(semi + 1);
      if (params.rfind("q=0", 0) == 0 && params.find_first_not_of("q=0.", 0) == std::string::npos) {
        continue;  // q=0, q=0.0, ...: refused
      }
    }
    return true;
  }
  return false;
}

}  // namespace nucleon
