#include "store/sqlite/bucket.h"

#include <algorithm>
#include <iterator>
#include <tuple>

#include "store/sqlite/byte_io.h"

namespace nucleon {

namespace {

constexpr uint8_t kFormat = 1;

template <typename Vec>
void Increment(Vec* counts, uint32_t id) {
  auto it = std::lower_bound(counts->begin(), counts->end(), id,
                             [](const auto& p, uint32_t v) { return p.first < v; });
  if (it != counts->end() && it->first == id) {
    ++it->second;
  } else {
    counts->insert(it, {id, 1});
  }
}

template <typename Vec>
void Decrement(Vec* counts, uint32_t id) {
  auto it = std::lower_bound(counts->begin(), counts->end(), id,
                             [](const auto& p, uint32_t v) { return p.first < v; });
  if (it == counts->end() || it->first != id) return;
  if (--it->second == 0) counts->erase(it);
}

// Small bitmaps (a breakdown value seen by a few users in a quarter hour) as
// delta varints; larger ones in Roaring's portable format.
void EncodeBitmap(const Roaring& r, ByteWriter& w, std::string* scratch) {
  const uint64_t n = r.cardinality();
  if (n <= 24) {
    w.Byte(0);
    w.Varint(n);
    uint32_t prev = 0;
    for (uint32_t v : r) {
      w.Varint(v - prev);
      prev = v;
    }
    return;
  }
  Roaring copy = r;
  copy.runOptimize();
  scratch->resize(copy.getSizeInBytes(true));
  copy.write(scratch->data(), true);
  w.Byte(1);
  w.String(*scratch);
}

bool DecodeBitmap(ByteReader& r, Roaring* out) {
  const uint8_t form = r.Byte();
  if (form == 0) {
    const uint64_t n = r.Varint();
    if (n > 24 || !r.ok()) return false;
    uint32_t v = 0;
    uint32_t values[24];
    for (uint64_t i = 0; i < n; ++i) {
      v += static_cast<uint32_t>(r.Varint());
      values[i] = v;
    }
    *out = Roaring();
    out->addMany(static_cast<size_t>(n), values);
    return r.ok();
  }
  if (form != 1) return false;
  const std::string_view bytes = r.String();
  if (!r.ok()) return false;
  try {
    *out = Roaring::readSafe(bytes.data(), bytes.size());
  } catch (...) {
    return false;
  }
  return true;
}

void EncodeCounts(const std::vector<std::pair<uint32_t, uint32_t>>& counts, ByteWriter& w) {
  w.Varint(counts.size());
  uint32_t prev = 0;
  for (const auto& [id, n] : counts) {
    w.Varint(id - prev);
    w.Varint(n);
    prev = id;
  }
}

bool DecodeCounts(ByteReader& r, std::vector<std::pair<uint32_t, uint32_t>>* out) {
  const uint64_t n = r.Varint();
  if (!r.ok() || n > r.remaining()) return false;
  out->clear();
  out->reserve(static_cast<size_t>(n));
  uint32_t id = 0;
  for (uint64_t i = 0; i < n; ++i) {
    id += static_cast<uint32_t>(r.Varint());
    out->emplace_back(id, static_cast<uint32_t>(r.Varint()));
  }
  return r.ok();
}

size_t RoaringBytes(const Roaring& r) { return r.getSizeInBytes(false) + 48; }

}  // namespace

void BucketCore::NoteRow(int64_t id) {
  // Rows mostly come in increasing order: the last run is the usual place.
  if (!runs.empty() && id >= runs.back().first) {
    if (id <= runs.back().second) return;
    if (id - runs.back().second <= kRunGap) {
      runs.back().second = id;
      return;
    }
    runs.emplace_back(id, id);
  } else {
    auto it = std::lower_bound(runs.begin(), runs.end(), std::make_pair(id, id));
    // `it` is the first run starting after id (or at it); the one before may hold it.
    if (it != runs.begin() && std::prev(it)->second >= id) return;
    if (it != runs.end() && it->first == id) return;
    const bool join_prev = it != runs.begin() && id - std::prev(it)->second <= kRunGap;
    const bool join_next = it != runs.end() && it->first - id <= kRunGap;
    if (join_prev && join_next) {
      std::prev(it)->second = it->second;
      runs.erase(it);
    } else if (join_prev) {
      std::prev(it)->second = id;
    } else if (join_next) {
      it->first = id;
    } else {
      runs.insert(it, {id, id});
    }
  }
  if (runs.size() > kMaxRuns) {
    // Too many: merge the two runs closest to each other.
    size_t best = 0;
    int64_t best_gap = INT64_MAX;
    for (size_t i = 0; i + 1 < runs.size(); ++i) {
      const int64_t gap = runs[i + 1].first - runs[i].second;
      if (gap < best_gap) {
        best_gap = gap;
        best = i;
      }
    }
    runs[best].second = runs[best + 1].second;
    runs.erase(runs.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

void BucketCore::Add(const RollupEvent& e) {
  if (e.id > 0) NoteRow(e.id);
  users.add(e.user);
  min_ms = std::min(min_ms, e.time_ms);
  max_ms = std::max(max_ms, e.time_ms);
  switch (e.type) {
    case EventType::kInit:
      ++inits;
      for (size_t d = 0; d < kDims; ++d) {
        if (e.dims[d] == 0) continue;
        auto it = std::lower_bound(dims.begin(), dims.end(), std::make_pair(d, e.dims[d]),
                                   [](const DimUsers& a, const std::pair<size_t, uint32_t>& b) {
                                     return std::make_pair(static_cast<size_t>(a.dim), a.value) < b;
                                   });
        if (it == dims.end() || it->dim != d || it->value != e.dims[d]) {
          it = dims.insert(it, DimUsers{static_cast<uint8_t>(d), e.dims[d], Roaring()});
        }
        it->users.add(e.user);
      }
      break;
    case EventType::kEvent:
      if (e.name) Increment(&events, e.name);
      break;
    case EventType::kError:
      if (e.name) Increment(&errors, e.name);
      break;
    default:
      break;
  }
  if (e.props.empty() || !e.name || (e.type != EventType::kInit && e.type != EventType::kEvent))
    return;
  for (const BodyProp& p : e.props) {
    const auto kind = static_cast<uint8_t>(p.value.kind);
    auto it =
        std::lower_bound(prop_keys.begin(), prop_keys.end(), std::make_tuple(e.name, p.key, kind),
                         [](const PropKey& a, const std::tuple<uint32_t, uint32_t, uint8_t>& b) {
                           return std::make_tuple(a.event, a.key, a.kind) < b;
                         });
    if (it == prop_keys.end() || it->event != e.name || it->key != p.key || it->kind != kind) {
      it = prop_keys.insert(it, PropKey{e.name, p.key, kind, 0});
    }
    ++it->occurrences;
  }
}

void BucketCore::RemoveUser(uint32_t user, const std::vector<RollupEvent>& removed) {
  users.remove(user);
  for (DimUsers& d : dims) d.users.remove(user);
  dims.erase(
      std::remove_if(dims.begin(), dims.end(), [](const DimUsers& d) { return d.users.isEmpty(); }),
      dims.end());
  for (const RollupEvent& e : removed) {
    switch (e.type) {
      case EventType::kInit:
        if (inits > 0) --inits;
        break;
      case EventType::kEvent:
        if (e.name) Decrement(&events, e.name);
        break;
      case EventType::kError:
        if (e.name) Decrement(&errors, e.name);
        break;
      default:
        break;
    }
    if (e.props.empty() || !e.name || (e.type != EventType::kInit && e.type != EventType::kEvent))
      continue;
    for (const BodyProp& p : e.props) {
      const auto kind = static_cast<uint8_t>(p.value.kind);
      auto it = std::find_if(prop_keys.begin(), prop_keys.end(), [&](const PropKey& k) {
        return k.event == e.name && k.key == p.key && k.kind == kind;
      });
      if (it != prop_keys.end() && --it->occurrences == 0) prop_keys.erase(it);
    }
  }
  if (users.isEmpty()) *this = BucketCore();
}

size_t BucketCore::MemoryBytes() const {
  size_t n = sizeof(*this) + RoaringBytes(users) + (events.capacity() + errors.capacity()) * 8 +
             prop_keys.capacity() * sizeof(PropKey) + runs.capacity() * 16;
  for (const DimUsers& d : dims) n += sizeof(DimUsers) + RoaringBytes(d.users);
  return n;
}

void BucketCore::Encode(std::string* out) const {
  out->clear();
  ByteWriter w(out);
  std::string scratch;
  w.Byte(kFormat);
  w.Varint(inits);
  w.Signed(min_ms);
  w.Signed(max_ms);
  EncodeBitmap(users, w, &scratch);
  EncodeCounts(events, w);
  EncodeCounts(errors, w);
  w.Varint(dims.size());
  for (const DimUsers& d : dims) {
    w.Byte(d.dim);
    w.Varint(d.value);
    EncodeBitmap(d.users, w, &scratch);
  }
  w.Varint(prop_keys.size());
  for (const PropKey& k : prop_keys) {
    w.Varint(k.event);
    w.Varint(k.key);
    w.Byte(k.kind);
    w.Varint(k.occurrences);
  }
  w.Varint(runs.size());
  int64_t prev = 0;
  for (const auto& [first, last] : runs) {
    w.Varint(static_cast<uint64_t>(first - prev));
    w.Varint(static_cast<uint64_t>(last - first));
    prev = last;
  }
}

bool BucketCore::Decode(std::string_view in, BucketCore* b) {
  ByteReader r(in);
  *b = BucketCore();
  if (r.Byte() != kFormat) return false;
  b->inits = static_cast<uint32_t>(r.Varint());
  b->min_ms = r.Signed();
  b->max_ms = r.Signed();
  if (!DecodeBitmap(r, &b->users)) return false;
  if (!DecodeCounts(r, &b->events) || !DecodeCounts(r, &b->errors)) return false;
  const uint64_t ndims = r.Varint();
  if (!r.ok() || ndims > r.remaining()) return false;
  b->dims.resize(static_cast<size_t>(ndims));
  for (DimUsers& d : b->dims) {
    d.dim = r.Byte();
    d.value = static_cast<uint32_t>(r.Varint());
    if (d.dim >= kDims || !DecodeBitmap(r, &d.users)) return false;
  }
  const uint64_t nkeys = r.Varint();
  if (!r.ok() || nkeys > r.remaining()) return false;
  b->prop_keys.resize(static_cast<size_t>(nkeys));
  for (PropKey& k : b->prop_keys) {
    k.event = static_cast<uint32_t>(r.Varint());
    k.key = static_cast<uint32_t>(r.Varint());
    k.kind = r.Byte();
    k.occurrences = static_cast<uint32_t>(r.Varint());
  }
  const uint64_t nruns = r.Varint();
  if (!r.ok() || nruns > r.remaining()) return false;
  b->runs.resize(static_cast<size_t>(nruns));
  int64_t prev = 0;
  for (auto& [first, last] : b->runs) {
    first = prev + static_cast<int64_t>(r.Varint());
    last = first + static_cast<int64_t>(r.Varint());
    prev = last;
  }
  return r.ok() && r.done();
}

bool BucketCore::DecodeUsers(std::string_view in, Roaring* users) {
  ByteReader r(in);
  if (r.Byte() != kFormat) return false;
  r.Varint();  // inits
  r.Signed();  // min_ms
  r.Signed();  // max_ms
  return r.ok() && DecodeBitmap(r, users);
}

bool BucketCore::operator==(const BucketCore& o) const {
  if (inits != o.inits || !(users == o.users) || events != o.events || errors != o.errors ||
      dims.size() != o.dims.size() || prop_keys.size() != o.prop_keys.size()) {
    return false;
  }
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i].dim != o.dims[i].dim || dims[i].value != o.dims[i].value ||
        !(dims[i].users == o.dims[i].users)) {
      return false;
    }
  }
  for (size_t i = 0; i < prop_keys.size(); ++i) {
    const PropKey& a = prop_keys[i];
    const PropKey& b = o.prop_keys[i];
    if (a.event != b.event || a.key != b.key || a.kind != b.kind ||
        a.occurrences != b.occurrences) {
      return false;
    }
  }
  return true;
}

std::string PropValues::ValueKey(const PropValue& v) {
  std::string k;
  k.reserve(v.text.size() + 1);
  k.push_back(static_cast<char>('0' + static_cast<int>(v.kind)));
  k.append(v.text);
  return k;
}

void PropValues::Remove(const PropValue& v) {
  auto it = counts.find(ValueKey(v));
  if (it == counts.end()) return;
  if (--it->second == 0) {
    value_bytes_ -= std::min(value_bytes_, EntryBytes(it->first));
    counts.erase(it);
  }
}

size_t PropValues::MemoryBytes() const {
  return sizeof(*this) + counts.bucket_count() * sizeof(void*) + value_bytes_;
}

void PropValues::Encode(std::string* out) const {
  // In the map's order: a live bucket's values are encoded at every
  // checkpoint, and Decode needs no order.
  out->clear();
  ByteWriter w(out);
  w.Varint(counts.size());
  for (const auto& [k, c] : counts) {
    w.String(k);
    w.Varint(c);
  }
}

bool PropValues::Decode(std::string_view in, PropValues* out) {
  ByteReader r(in);
  out->counts.clear();
  const uint64_t n = r.Varint();
  if (!r.ok() || n > r.remaining()) return false;
  out->counts.reserve(static_cast<size_t>(n));
  out->value_bytes_ = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const std::string_view k = r.String();
    const auto c = static_cast<uint32_t>(r.Varint());
    if (!r.ok() || k.empty()) return false;
    auto [it, added] = out->counts.emplace(std::string(k), c);
    if (added) out->value_bytes_ += EntryBytes(it->first);
  }
  return r.done();
}

}  // namespace nucleon
