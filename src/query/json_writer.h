// A small append-only JSON writer for response bodies: keys come out in the
// order they are written (the API's documented order), numbers in their
// shortest round-trip form. Not thread-safe; one per response.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nucleon {

class JsonWriter {
 public:
  JsonWriter& BeginObject() { Sep(); out_ += '{'; first_ = true; return *this; }
  JsonWriter& EndObject() { out_ += '}'; first_ = false; return *this; }
  JsonWriter& BeginArray() { Sep(); out_ += '['; first_ = true; return *this; }
  JsonWriter& EndArray() { out_ += ']'; first_ = false; return *this; }
  JsonWriter& Key(std::string_view k);
  JsonWriter& String(std::string_view s);
  JsonWriter& OptString(const std::optional<std::string>& s) { return s ? String(*s) : Null(); }
  // Empty string as null.
  JsonWriter& StringOrNull(std::string_view s) { return s.empty() ? Null() : String(s); }
  JsonWriter& Int(int64_t v);
  JsonWriter& Double(double v);
  JsonWriter& Bool(bool v) { return Raw(v ? "true" : "false"); }
  JsonWriter& Null() { return Raw("null"); }
  // Already-serialised JSON.
  JsonWriter& Raw(std::string_view json) { Sep(); out_.append(json); return *this; }

  // Room for `bytes` more output: a large answer is not copied as it grows.
  void Reserve(size_t bytes) { out_.reserve(out_.size() + bytes); }
  std::string Take() { return std::move(out_); }

 private:
  void Sep() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string out_;
  bool first_ = true;
  bool after_key_ = false;
};

}  // namespace nucleon
