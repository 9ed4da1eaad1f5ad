// A SQLite VFS over the system's that zeroes the free space of every b-tree
// page it writes to a database file: the unallocated gap between a page's
// cell pointers and its cells, and the body of each free block.
//
// Why: SQLite's secure_delete zeroes a row's bytes when the row is deleted,
// but when it rebalances a page it rebuilds the page from its cells and leaves
// the old bytes in the gap. A row rewritten often (a rollup) or moved by a
// split (an index on user keys) thus leaves older copies of itself in free
// space, and a deleted user's values could outlive the delete there. SQLite
// never reads free space, so zeroing it on the way to the disk changes nothing
// but what the file holds. Only whole database pages are scrubbed (in WAL mode
// every database write is one: a checkpoint); a page that does not parse as a
// b-tree page with consistent bounds is written as it is. The write-ahead log
// is left alone (frames are checksummed); it is emptied after every delete.
//
// Thread-safety: registered once (process-wide), then used by SQLite under its
// own locking like the VFS it wraps.
#pragma once

#include <cstddef>
#include <string>

namespace nucleon {

// The name to open database files with (sqlite3_open_v2's zVfs); registers the
// VFS on first use. Empty if it could not be registered (the default VFS is
// then used, without scrubbing).
const char* ScrubbingVfsName();

// Zeroes the free space of one database page in place, as the VFS does before
// a write. `page_number` from 1 (page 1 starts with the 100-byte file header);
// `usable` is the page size less the reserved bytes per page. False when the
// page was left unchanged (not a b-tree page, or inconsistent).
bool ScrubPage(unsigned char* page, size_t page_size, size_t usable, unsigned page_number);

}  // namespace nucleon
