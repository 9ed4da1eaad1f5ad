// The scalar properties of an event payload (strings, numbers, booleans), as
// the index and the API see them. Shared by the decoder and the stores so a
// value is classified and rendered the same way everywhere. Pure; thread-safe.
#pragma once

#include <boost/json/object.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/event.h"

namespace nucleon {

// nullopt for values that are not properties (null, objects, arrays).
std::optional<PropValue> ScalarProp(const boost::json::value& v);

std::vector<std::pair<std::string, PropValue>> ScalarProps(const boost::json::object& payload);

// Parses a stored payload (JSON object text); empty for anything else.
std::vector<std::pair<std::string, PropValue>> ParsePayloadProps(std::string_view payload_json);

// The texts of the `message` and `stack` properties of an error's stored
// payload ("" for one that is absent or not a property).
std::pair<std::string, std::string> ErrorTexts(std::string_view payload_json);

// The JSON text of a property value, for showing user props with their type.
std::string PropJson(const PropValue& v);

}  // namespace nucleon
