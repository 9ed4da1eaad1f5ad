#include "core/event.h"

namespace nucleon {

std::string_view EventTypeName(EventType type) {
  switch (type) {
    case EventType::kInit: return "init";
    case EventType::kEvent: return "event";
    case EventType::kError: return "error";
    case EventType::kUserId: return "userid";
    case EventType::kProps: return "props";
    case EventType::kView: return "nucleus:view";
    case EventType::kHeartbeat: return "heartbeat";
  }
  return "event";
}

std::optional<EventType> ParseEventType(std::string_view name) {
  if (name == "event") return EventType::kEvent;
  if (name == "init") return EventType::kInit;
  if (name == "error") return EventType::kError;
  if (name == "userid") return EventType::kUserId;
  if (name == "props") return EventType::kProps;
  if (name == "nucleus:view") return EventType::kView;
  if (name == "heartbeat" || name == "nucleus:heartbeat") return EventType::kHeartbeat;
  return std::nullopt;
}

std::string_view PropKindName(PropValue::Kind kind) {
  switch (kind) {
    case PropValue::Kind::kString: return "string";
    case PropValue::Kind::kNumber: return "number";
    case PropValue::Kind::kBool: return "boolean";
  }
  return "string";
}

}  // namespace nucleon
