// StringDictionary: the small vocabulary of an events file (event and error
// names, payload keys, context values such as platforms and versions, and the
// normalised breakdown values) as dense integer ids, so that event rows and
// rollups store a varint instead of the text. Persisted in the `strings` table
// and loaded whole at open: its size follows the app's vocabulary, not the
// number of events. Id 0 is the empty string and is never stored.
//
// Ids are handed out in memory at once (Intern) and written by the next
// transaction of the writer connection (FlushPending, then CommitFlushed once
// that transaction committed): a row or rollup that uses an id is always
// committed together with, or after, the id's own row.
//
// Thread-safety: every method may be called from any thread. Text() is
// lock-free and the views it returns stay valid for the dictionary's lifetime.
// FlushPending/CommitFlushed/DropFlushed belong to the writer thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "store/sqlite/sqlite_db.h"

namespace nucleon {

class StringDictionary {
 public:
  static constexpr uint32_t kEmpty = 0;

  StringDictionary();
  ~StringDictionary();
  StringDictionary(const StringDictionary&) = delete;
  StringDictionary& operator=(const StringDictionary&) = delete;

  // Reads every stored string (at open, before any other use).
  Status Load(SqliteDb& db);

  // The id of `s`, adding it when new. kEmpty for "".
  uint32_t Intern(std::string_view s);
  // The id of `s`, or nullopt-like kMissing when it was never interned.
  static constexpr uint32_t kMissing = UINT32_MAX;
  uint32_t Find(std::string_view s) const;
  // The text of an id handed out by this dictionary ("" for kEmpty or an
  // unknown id).
  std::string_view Text(uint32_t id) const;
  size_t size() const { return size_.load(std::memory_order_acquire); }

  // Writes the ids handed out but not yet stored, inside the caller's open
  // transaction on the writer connection.
  Status FlushPending(SqliteDb& db);
  // The transaction that ran FlushPending committed / rolled back.
  void CommitFlushed();
  void DropFlushed() { flushed_ = 0; }

  // Approximate bytes held.
  size_t MemoryBytes() const;

 private:
  static constexpr size_t kChunkBits = 12;
  static constexpr size_t kChunk = size_t{1} << kChunkBits;
  static constexpr size_t kMaxChunks = size_t{1} << 18;  // 1 billion strings

  uint32_t AddLocked(std::string_view s);

  struct ViewHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::shared_mutex mu_;
  std::unordered_map<std::string_view, uint32_t, ViewHash, std::equal_to<>> ids_;
  // Texts by id in fixed chunks: a published id's text never moves.
  std::unique_ptr<std::atomic<std::string*>[]> chunks_;
  std::atomic<size_t> size_{1};    // ids < size_ are readable; 0 is ""
  std::vector<uint32_t> pending_;  // handed out, not yet committed to the file
  size_t flushed_ = 0;             // pending_[0, flushed_) written by the open transaction
  size_t bytes_ = 0;
};

}  // namespace nucleon
