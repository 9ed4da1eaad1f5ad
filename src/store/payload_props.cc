#include "store/payload_props.h"

#include <boost/json.hpp>
#include <cmath>

#include "core/normalize.h"

namespace nucleon {

std::optional<PropValue> ScalarProp(const boost::json::value& v) {
  if (v.is_string()) return PropValue{PropValue::Kind::kString, std::string(v.get_string())};
  if (v.is_bool()) return PropValue{PropValue::Kind::kBool, v.get_bool() ? "true" : "false"};
  if (v.is_number()) {
    const double d = v.to_number<double>();
    if (!std::isfinite(d)) return std::nullopt;
    return PropValue{PropValue::Kind::kNumber, v.is_double() ? RenderNumber(d)
                                               : v.is_int64() ? std::to_string(v.get_int64())
                                                              : std::to_string(v.get_uint64())};
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, PropValue>> ScalarProps(const boost::json::object& payload) {
  std::vector<std::pair<std::string, PropValue>> out;
  out.reserve(payload.size());
  for (const auto& kv : payload) {
    if (auto p = ScalarProp(kv.value())) out.emplace_back(std::string(kv.key()), std::move(*p));
  }
  return out;
}

std::vector<std::pair<std::string, PropValue>> ParsePayloadProps(std::string_view payload_json) {
  if (payload_json.size() <= 2) return {};
  // Small payloads parse into a stack buffer: no allocation for the tree.
  unsigned char buffer[4096];
  boost::json::monotonic_resource mr(buffer, sizeof buffer);
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(payload_json, ec, &mr);
  if (ec || !v.is_object()) return {};
  return ScalarProps(v.get_object());
}

std::pair<std::string, std::string> ErrorTexts(std::string_view payload_json) {
  std::pair<std::string, std::string> out;
  for (auto& [key, value] : ParsePayloadProps(payload_json)) {
    if (key == "message") out.first = std::move(value.text);
    if (key == "stack") out.second = std::move(value.text);
  }
  return out;
}

std::string PropJson(const PropValue& v) {
  if (v.kind != PropValue::Kind::kString) return v.text;
  return boost::json::serialize(boost::json::value(v.text));
}

}  // namespace nucleon
