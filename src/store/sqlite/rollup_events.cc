#include "store/sqlite/rollup_events.h"

#include "core/normalize.h"

namespace nucleon {

uint32_t RollupEventBuilder::InitName() {
  if (!init_name_) init_name_ = dict_->Intern("init");
  return init_name_;
}

void RollupEventBuilder::Dims(RollupEvent* e, std::string_view platform, std::string_view locale,
                              std::string_view version, std::string_view country,
                              const std::optional<double>& ram) {
  e->dims[static_cast<size_t>(Dim::kPlatform)] = dict_->Intern(NormalizePlatform(platform));
  e->dims[static_cast<size_t>(Dim::kLanguage)] = dict_->Intern(LanguageOf(locale));
  e->dims[static_cast<size_t>(Dim::kVersion)] = dict_->Intern(version);
  e->dims[static_cast<size_t>(Dim::kCountry)] = dict_->Intern(country);
  if (ram) e->dims[static_cast<size_t>(Dim::kRam)] = dict_->Intern(RamBucket(*ram));
}

void RollupEventBuilder::Add(const Event& e, int64_t id, uint32_t user, bool with_props) {
  fixed_ = false;
  RollupEvent r;
  r.id = id;
  r.time_ms = e.time_ms;
  r.type = e.type;
  r.user = user;
  const size_t begin = props_.size();
  switch (e.type) {
    case EventType::kInit:
      r.name = InitName();
      Dims(&r, e.platform, e.locale, e.version, e.country, e.total_ram);
      break;
    case EventType::kEvent:
    case EventType::kError:
      r.name = dict_->Intern(e.name);
      break;
    default:
      break;
  }
  if (with_props && r.name && (e.type == EventType::kInit || e.type == EventType::kEvent)) {
    for (const auto& [key, value] : e.props) props_.push_back({dict_->Intern(key), value});
  }
  ranges_.emplace_back(begin, props_.size());
  events_.push_back(r);
}

void RollupEventBuilder::AddStored(int64_t id, int64_t time_ms, EventType type, uint32_t user,
                                   uint32_t name, const BodyParts& body, bool with_props) {
  fixed_ = false;
  RollupEvent r;
  r.id = id;
  r.time_ms = time_ms;
  r.type = type;
  r.user = user;
  const size_t begin = props_.size();
  switch (type) {
    case EventType::kInit: {
      r.name = InitName();
      auto text = [&](CtxField f) { return dict_->Text(body.ctx[static_cast<size_t>(f)]); };
      Dims(&r, text(CtxField::kPlatform), text(CtxField::kLocale), text(CtxField::kVersion),
           text(CtxField::kCountry), body.total_ram);
      break;
    }
    case EventType::kEvent:
    case EventType::kError:
      r.name = name;
      break;
    default:
      break;
  }
  if (with_props && r.name && (type == EventType::kInit || type == EventType::kEvent)) {
    DecodeBodyProps(body, *dict_, &scratch_);
    props_.insert(props_.end(), scratch_.begin(), scratch_.end());
  }
  ranges_.emplace_back(begin, props_.size());
  events_.push_back(r);
}

std::span<const RollupEvent> RollupEventBuilder::events() {
  if (!fixed_) {
    for (size_t i = 0; i < events_.size(); ++i) {
      events_[i].props = std::span<const BodyProp>(props_.data() + ranges_[i].first,
                                                   ranges_[i].second - ranges_[i].first);
    }
    fixed_ = true;
  }
  return events_;
}

void RollupEventBuilder::Clear() {
  events_.clear();
  props_.clear();
  ranges_.clear();
  fixed_ = false;
}

}  // namespace nucleon
