#include "store/sqlite/string_dictionary.h"

namespace nucleon {

StringDictionary::StringDictionary() : chunks_(new std::atomic<std::string*>[kMaxChunks]) {
  for (size_t i = 0; i < kMaxChunks; ++i) chunks_[i].store(nullptr, std::memory_order_relaxed);
  chunks_[0].store(new std::string[kChunk], std::memory_order_release);
}

StringDictionary::~StringDictionary() {
  for (size_t i = 0; i < kMaxChunks; ++i) delete[] chunks_[i].load(std::memory_order_relaxed);
}

uint32_t StringDictionary::AddLocked(std::string_view s) {
  const size_t id = size_.load(std::memory_order_relaxed);
  const size_t chunk = id >> kChunkBits;
  if (chunk >= kMaxChunks) return kEmpty;  // a billion distinct strings: stop growing
  std::string* slots = chunks_[chunk].load(std::memory_order_relaxed);
  if (!slots) {
    slots = new std::string[kChunk];
    chunks_[chunk].store(slots, std::memory_order_release);
  }
  std::string& slot = slots[id & (kChunk - 1)];
  slot.assign(s);
  ids_.emplace(std::string_view(slot), static_cast<uint32_t>(id));
  bytes_ += s.size() + 64;
  size_.store(id + 1, std::memory_order_release);
  return static_cast<uint32_t>(id);
}

Status StringDictionary::Load(SqliteDb& db) {
  auto q = db.Prepare("SELECT id, text FROM strings ORDER BY id");
  if (!q.ok()) return q.status();
  std::unique_lock<std::shared_mutex> lock(mu_);
  Status st;
  while (q->Step(&st)) {
    const int64_t id = q->Int(0);
    // Ids are dense from 1; a gap (never expected) is filled with placeholders
    // so every stored id keeps its text.
    while (static_cast<int64_t>(size_.load(std::memory_order_relaxed)) < id) {
      AddLocked("\x01gap" + std::to_string(size_.load(std::memory_order_relaxed)));
    }
    if (static_cast<int64_t>(size_.load(std::memory_order_relaxed)) == id) AddLocked(q->Text(1));
  }
  return st;
}

uint32_t StringDictionary::Intern(std::string_view s) {
  if (s.empty()) return kEmpty;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = ids_.find(s);
    if (it != ids_.end()) return it->second;
  }
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = ids_.find(s);
  if (it != ids_.end()) return it->second;
  const uint32_t id = AddLocked(s);
  if (id != kEmpty) pending_.push_back(id);
  return id;
}

uint32_t StringDictionary::Find(std::string_view s) const {
  if (s.empty()) return kEmpty;
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = ids_.find(s);
  return it == ids_.end() ? kMissing : it->second;
}

std::string_view StringDictionary::Text(uint32_t id) const {
  if (id == kEmpty || id >= size_.load(std::memory_order_acquire)) return {};
  const std::string* slots = chunks_[id >> kChunkBits].load(std::memory_order_acquire);
  return slots[id & (kChunk - 1)];
}

Status StringDictionary::FlushPending(SqliteDb& db) {
  std::vector<uint32_t> ids;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    ids.assign(pending_.begin(), pending_.end());
  }
  flushed_ = ids.size();
  if (ids.empty()) return Status::Ok();
  auto ins = db.Prepare("INSERT OR REPLACE INTO strings(id, text) VALUES(?, ?)");
  if (!ins.ok()) return ins.status();
  for (uint32_t id : ids) {
    ins->Bind(1, static_cast<int64_t>(id));
    ins->BindView(2, Text(id));
    NUCLEON_RETURN_IF_ERROR(ins->Run());
    ins->Reset();
  }
  return Status::Ok();
}

void StringDictionary::CommitFlushed() {
  if (flushed_ == 0) return;
  std::unique_lock<std::shared_mutex> lock(mu_);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(flushed_));
  flushed_ = 0;
}

size_t StringDictionary::MemoryBytes() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return bytes_;
}

}  // namespace nucleon
