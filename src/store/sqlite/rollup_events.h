// Builds RollupEvents (what a rollup needs of an event) from an event as it
// was ingested or from a stored event row, in batches: the breakdown values
// are normalised (platform, language, RAM) and interned, payload keys become
// dictionary ids. Shared by the publisher, the start-up replay, the raw reads
// of partial buckets and the user delete, so every path counts an event the
// same way.
//
// Thread-safety: one builder per thread; the dictionary is thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/event.h"
#include "store/sqlite/bucket.h"
#include "store/sqlite/event_codec.h"
#include "store/sqlite/string_dictionary.h"

namespace nucleon {

class RollupEventBuilder {
 public:
  explicit RollupEventBuilder(StringDictionary* dict) : dict_(dict) {}

  // An event as ingested (its `name` is text), stored as row `id`.
  // `with_props`: count payload props.
  void Add(const Event& e, int64_t id, uint32_t user, bool with_props = true);
  // A stored row (`id`, 0 when it does not matter): `name` is its dictionary
  // id; `body` its parsed body.
  void AddStored(int64_t id, int64_t time_ms, EventType type, uint32_t user, uint32_t name,
                 const BodyParts& body, bool with_props = true);

  // The events added since Clear (the spans stay valid until the next Add or Clear).
  std::span<const RollupEvent> events();
  size_t size() const { return events_.size(); }
  void Clear();

 private:
  void Dims(RollupEvent* e, std::string_view platform, std::string_view locale,
            std::string_view version, std::string_view country, const std::optional<double>& ram);
  uint32_t InitName();

  StringDictionary* dict_;
  uint32_t init_name_ = 0;
  std::vector<RollupEvent> events_;
  std::vector<BodyProp> props_;
  std::vector<std::pair<size_t, size_t>> ranges_;  // per event: [begin, end) in props_
  std::vector<BodyProp> scratch_;
  bool fixed_ = false;
};

}  // namespace nucleon
