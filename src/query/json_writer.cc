#include "query/json_writer.h"

#include "core/normalize.h"
#include "core/http_types.h"

namespace nucleon {

JsonWriter& JsonWriter::Key(std::string_view k) {
  Sep();
  AppendJsonQuoted(&out_, k);
  out_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::String(std::string_view s) {
  Sep();
  AppendJsonQuoted(&out_, s);
  return *this;
}

JsonWriter& JsonWriter::Int(int64_t v) {
  Sep();
  out_ += std::to_string(v);
  return *this;
}

JsonWriter& JsonWriter::Double(double v) {
  Sep();
  out_ += RenderNumber(v);
  return *this;
}

}  // namespace nucleon
