#include "store/sqlite/scrubbing_vfs.h"

#include <sqlite3.h>

#include <cstring>
#include <mutex>
#include <vector>

namespace nucleon {

namespace {

unsigned Get2(const unsigned char* p) { return (static_cast<unsigned>(p[0]) << 8) | p[1]; }

}  // namespace

bool ScrubPage(unsigned char* page, size_t page_size, size_t usable, unsigned page_number) {
  if (usable > page_size || usable < 480) return false;
  const size_t h = page_number == 1 ? 100 : 0;  // page 1 starts with the file header
  const unsigned char type = page[h];
  // 2, 5: interior index / table page (12-byte header); 10, 13: leaf (8 bytes).
  if (type != 2 && type != 5 && type != 10 && type != 13) return false;
  const size_t header = (type == 2 || type == 5) ? 12 : 8;
  const size_t cells = Get2(page + h + 3);
  size_t content = Get2(page + h + 5);
  if (content == 0) content = 65536;
  const size_t pointers_end = h + header + 2 * cells;
  if (pointers_end > content || content > usable) return false;
  // The cell pointers must point into the content area.
  for (size_t i = 0; i < cells; ++i) {
    const size_t cell = Get2(page + h + header + 2 * i);
    if (cell < content || cell >= usable) return false;
  }
  // Free blocks: a chain in increasing order inside the content area, each
  // with a 4-byte head (next, size) that stays.
  std::vector<std::pair<size_t, size_t>> blocks;
  size_t block = Get2(page + h + 1);
  size_t previous = 0;
  while (block != 0) {
    if (block <= previous || block < content || block + 4 > usable) return false;
    const size_t size = Get2(page + block + 2);
    if (size < 4 || block + size > usable) return false;
    blocks.emplace_back(block, size);
    previous = block;
    block = Get2(page + block);
  }
  std::memset(page + pointers_end, 0, content - pointers_end);
  for (const auto& [at, size] : blocks) std::memset(page + at + 4, 0, size - 4);
  return true;
}

namespace {

struct ScrubFile {
  sqlite3_file base;  // pMethods: kMethods
  bool main_db = false;
  size_t page_size = 0;  // from the file header, once read or written
  size_t reserved = 0;   // bytes reserved at the end of each page (file header byte 20)
  sqlite3_file* real() { return reinterpret_cast<sqlite3_file*>(this + 1); }
};

sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

#define REAL(f) (reinterpret_cast<ScrubFile*>(f)->real())

int Close(sqlite3_file* f) {
  sqlite3_file* r = REAL(f);
  return r->pMethods ? r->pMethods->xClose(r) : SQLITE_OK;
}
// The page size and reserved bytes of a database, from its first 100 bytes.
void NoteHeader(ScrubFile* sf, const unsigned char* header) {
  const size_t size = Get2(header + 16);
  sf->page_size = size == 1 ? 65536 : size;
  sf->reserved = header[20];
}

int Read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  ScrubFile* sf = reinterpret_cast<ScrubFile*>(f);
  sqlite3_file* r = sf->real();
  const int rc = r->pMethods->xRead(r, buf, amt, off);
  if (rc == SQLITE_OK && sf->main_db && off == 0 && amt >= 100) {
    NoteHeader(sf, static_cast<const unsigned char*>(buf));
  }
  return rc;
}
int Write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  ScrubFile* sf = reinterpret_cast<ScrubFile*>(f);
  sqlite3_file* r = sf->real();
  const auto size = static_cast<size_t>(amt);
  if (sf->main_db && off == 0 && size >= 100)
    NoteHeader(sf, static_cast<const unsigned char*>(buf));
  // Whole pages only (every database write in WAL mode is one).
  const bool page = sf->main_db && sf->page_size >= 512 && size == sf->page_size &&
                    off % amt == 0 && sf->reserved < size;
  if (!page) return r->pMethods->xWrite(r, buf, amt, off);
  // A copy per call: a connection may still write while the process exits
  // (a static owner closing its database), after thread-local buffers are gone.
  unsigned char small[8192];
  std::vector<unsigned char> large;
  unsigned char* copy = small;
  if (size > sizeof small) {
    large.resize(size);
    copy = large.data();
  }
  std::memcpy(copy, buf, size);
  ScrubPage(copy, size, size - sf->reserved, static_cast<unsigned>(off / amt + 1));
  return r->pMethods->xWrite(r, copy, amt, off);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  return REAL(f)->pMethods->xTruncate(REAL(f), size);
}
int Sync(sqlite3_file* f, int flags) { return REAL(f)->pMethods->xSync(REAL(f), flags); }
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return REAL(f)->pMethods->xFileSize(REAL(f), size);
}
int Lock(sqlite3_file* f, int level) { return REAL(f)->pMethods->xLock(REAL(f), level); }
int Unlock(sqlite3_file* f, int level) { return REAL(f)->pMethods->xUnlock(REAL(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return REAL(f)->pMethods->xSectorSize(REAL(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return REAL(f)->pMethods->xShmMap(REAL(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { REAL(f)->pMethods->xShmBarrier(REAL(f)); }
int ShmUnmap(sqlite3_file* f, int remove) { return REAL(f)->pMethods->xShmUnmap(REAL(f), remove); }
// No memory-mapped pages: every page reaches the file through Write.
int Fetch(sqlite3_file*, sqlite3_int64, int, void** out) {
  *out = nullptr;
  return SQLITE_OK;
}
int Unfetch(sqlite3_file*, sqlite3_int64, void*) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* f, int flags, int* out_flags) {
  ScrubFile* sf = reinterpret_cast<ScrubFile*>(f);
  sf->base.pMethods = nullptr;
  sf->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
  sf->page_size = 0;
  sf->reserved = 0;
  sqlite3_file* r = sf->real();
  std::memset(r, 0, static_cast<size_t>(g_real->szOsFile));
  const int rc = g_real->xOpen(g_real, name, r, flags, out_flags);
  if (rc == SQLITE_OK || r->pMethods) sf->base.pMethods = &kMethods;
  return rc;
}

int Delete(sqlite3_vfs*, const char* name, int sync_dir) {
  return g_real->xDelete(g_real, name, sync_dir);
}
int Access(sqlite3_vfs*, const char* name, int flags, int* out) {
  return g_real->xAccess(g_real, name, flags, out);
}
int FullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* DlOpen(sqlite3_vfs*, const char* name) { return g_real->xDlOpen(g_real, name); }
void DlError(sqlite3_vfs*, int n, char* out) { g_real->xDlError(g_real, n, out); }
void (*DlSym(sqlite3_vfs*, void* h, const char* sym))(void) {
  return g_real->xDlSym(g_real, h, sym);
}
void DlClose(sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); }
int Randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int Sleep(sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); }
int CurrentTime(sqlite3_vfs*, double* out) { return g_real->xCurrentTime(g_real, out); }
int GetLastError(sqlite3_vfs*, int n, char* out) {
  return g_real->xGetLastError ? g_real->xGetLastError(g_real, n, out) : 0;
}
int CurrentTimeInt64(sqlite3_vfs*, sqlite3_int64* out) {
  return g_real->xCurrentTimeInt64(g_real, out);
}

#undef REAL

}  // namespace

const char* ScrubbingVfsName() {
  static std::once_flag once;
  static bool registered = false;
  std::call_once(once, [] {
    g_real = sqlite3_vfs_find(nullptr);
    if (!g_real || g_real->iVersion < 2) return;
    std::memset(&g_vfs, 0, sizeof g_vfs);
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(ScrubFile)) + g_real->szOsFile;
    g_vfs.mxPathname = g_real->mxPathname;
    g_vfs.zName = "nucleon-scrub";
    g_vfs.xOpen = Open;
    g_vfs.xDelete = Delete;
    g_vfs.xAccess = Access;
    g_vfs.xFullPathname = FullPathname;
    g_vfs.xDlOpen = DlOpen;
    g_vfs.xDlError = DlError;
    g_vfs.xDlSym = DlSym;
    g_vfs.xDlClose = DlClose;
    g_vfs.xRandomness = Randomness;
    g_vfs.xSleep = Sleep;
    g_vfs.xCurrentTime = CurrentTime;
    g_vfs.xGetLastError = GetLastError;
    g_vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    registered = sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0) == SQLITE_OK;
  });
  return registered ? g_vfs.zName : nullptr;
}

}  // namespace nucleon
