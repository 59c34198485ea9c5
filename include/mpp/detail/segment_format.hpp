// The binary layout of an mpp segment, shared by the library and mpp-inspect, which reads
// it from a read-only mapping without knowing the objects' C++ types. Every field has a
// fixed size and offset (checked by static_asserts below); FORMAT_VERSION changes whenever
// any of them does. All integers are native-endian (a segment never leaves its machine).
//
// Owned by the shared-memory core (runtime/segment.cpp); see docs/design/segment-growth.md.
//
// A segment, from offset 0 of the mapping (or of /dev/shm/<name>):
//
//   [SegmentHeader]                       offset 0, sizeof(SegmentHeader) bytes
//   [DirectoryEntry x directory_capacity] at header.directory_offset
//   [HeapHeader]                          at header.heap_offset
//   [blocks ...]                          from HeapHeader::first_block up to `top`;
//                                         never-used space from `top` to `size`
//   (address space reserved up to `max_size`: the file grows into it; see below)
//
// Growth: every process maps `max_size` bytes (MAP_SHARED | MAP_NORESERVE) although the
// file holds only `size`; pages past `size` are never handed out, so no process touches
// them. A grower (holding the allocator's lock) extends the file with posix_fallocate and
// then publishes the new size with ONE release store of `size`; `heap_size` follows as a
// derived copy. Killed before that store, the file is larger than `size` (harmless: the
// next growth covers it again); killed after it, the allocator's recovery recomputes
// `heap_size`.
//
// Every object's state lives in the heap and starts with an ObjectHeader; the directory
// entry of a named object gives its offset from the start of the segment. Offsets, never
// pointers, are stored in a segment: each process maps it at its own address.
//
// How to read a segment safely (what Segment::attach and mpp-inspect do):
//   1. the file must be at least sizeof(SegmentHeader) bytes;
//   2. magic == SEGMENT_MAGIC (the creator stores it LAST, with release order, so a
//      process that sees the magic sees a complete header, directory and heap);
//   3. format_version == FORMAT_VERSION and header_bytes == sizeof(SegmentHeader);
//   4. size <= the file's size <= max_size, and the directory and heap lie inside it.
// While magic is 0 a creator may still be building it: creator_pid and
// creator_start_ticks are written before anything else, so an attacher can wait for a
// live creator and name it.
// Only then may the other fields be trusted.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mpp/detail/robust_mutex.hpp"

namespace mpp::detail {

enum class ObjectKind : std::uint32_t {
  none = 0,
  dict = 1,
  list = 2,
  value = 3,
  array = 4,
  queue = 5,
  joinable_queue = 6,
  simple_queue = 7,
  lock = 8,
  rlock = 9,
  semaphore = 10,
  bounded_semaphore = 11,
  event = 12,
  condition = 13,
  barrier = 14,
};

// The Python-style name of a kind ("dict", "bounded_semaphore"), "unknown" for values this
// version does not know (a newer writer, or a corrupt entry).
constexpr std::string_view kind_name(ObjectKind k) noexcept {
  switch (k) {
    case ObjectKind::none: return "none";
    case ObjectKind::dict: return "dict";
    case ObjectKind::list: return "list";
    case ObjectKind::value: return "value";
    case ObjectKind::array: return "array";
    case ObjectKind::queue: return "queue";
    case ObjectKind::joinable_queue: return "joinable_queue";
    case ObjectKind::simple_queue: return "simple_queue";
    case ObjectKind::lock: return "lock";
    case ObjectKind::rlock: return "rlock";
    case ObjectKind::semaphore: return "semaphore";
    case ObjectKind::bounded_semaphore: return "bounded_semaphore";
    case ObjectKind::event: return "event";
    case ObjectKind::condition: return "condition";
    case ObjectKind::barrier: return "barrier";
  }
  return "unknown";
}

// The first member of every object's state in a segment. The object's own lock lives here,
// so mpp-inspect can name its holder (mutex.holder()) and count its recoveries
// (mutex.recoveries()) for any kind of object, without knowing the kind.
struct ObjectHeader {
  ObjectHeader() = default;
  // A header whose lock is recursive (RLock, and the RLock of a Value, Array or Condition).
  explicit ObjectHeader(RobustMutex::Kind kind) : mutex(kind) {}

  RobustMutex mutex;                     // the object's exclusive lock (writers)
  std::atomic<std::uint64_t> count{0};   // elements (dict/list size, queue depth), for inspect
  std::atomic<std::uint64_t> bytes{0};   // heap bytes the object holds, for inspect
  std::atomic<std::uint64_t> leaked{0};  // bytes given up by crash recoveries, for inspect
};

// "mppSEG01" as the first 8 bytes of the file.
inline constexpr std::uint64_t SEGMENT_MAGIC = 0x313047455370706dULL;
inline constexpr std::uint32_t FORMAT_VERSION = 6;  // 3: growable segments, heap directory,
                                                    // coalescing heap, queue claims with start
                                                    // ticks, native container encoding;
                                                    // 4: a dict's writer stripes;
                                                    // 5: a list's scratch block, a reader's
                                                    // request for a gap between writers;
                                                    // 6: a dict node's spare value room

inline constexpr std::size_t MAX_SEGMENT_NAME = 200;  // bytes, without the leading '/'
inline constexpr std::size_t MAX_OBJECT_NAME = 127;   // bytes, without the NUL
inline constexpr std::size_t TYPE_NAME_BYTES = 192;   // including the NUL; longer names are
                                                      // cut (type_hash compares them in full)

// DirectoryEntry::state values.
enum class EntryState : std::uint32_t {
  free = 0,       // unused
  building = 1,   // reserved by a creator that holds directory_mutex; not yet visible
  published = 2,  // complete and immutable: readable without any lock
};

// One named object. An entry is filled while state == building (under the segment's
// directory_mutex) and made visible by ONE release store of state = published; a reader
// that acquire-loads `published` sees every other field complete. Published entries never
// change again (objects are not deleted from a segment).
struct DirectoryEntry {
  std::atomic<std::uint32_t> state{0};  // EntryState
  ObjectKind kind{ObjectKind::none};    // what the object is
  std::uint64_t object_offset = 0;      // from the segment's start to the object's state,
                                        // which begins with an ObjectHeader
  std::uint64_t object_bytes = 0;       // size of that state block (not what it points to)
  std::uint64_t type_hash = 0;          // FNV-1a 64 of key_type + '\0' + value_type, in full
  std::int32_t creator_pid = 0;         // process that created the object
  std::uint32_t name_hash = 0;          // low 32 bits of fnv1a64(name): a lookup's quick test
  std::uint64_t creation_time_ns = 0;   // CLOCK_REALTIME, nanoseconds since the epoch
  char name[MAX_OBJECT_NAME + 1] = {};  // NUL-terminated
  char key_type[TYPE_NAME_BYTES] = {};  // C++ type name of the keys (dict), else empty
  char value_type[TYPE_NAME_BYTES] = {};  // C++ type name of the values/elements, else empty
};

// At offset 0 of every segment.
struct SegmentHeader {
  std::atomic<std::uint64_t> magic{0};  // SEGMENT_MAGIC, stored last by the creator
  std::uint32_t format_version = 0;     // FORMAT_VERSION
  std::uint32_t header_bytes = 0;       // sizeof(SegmentHeader)
  std::int32_t creator_pid = 0;         // the process that created (and will remove) it
  std::uint32_t anonymous = 0;          // 1: MAP_ANONYMOUS segment, never in /dev/shm
  std::uint64_t creation_time_ns = 0;   // CLOCK_REALTIME, nanoseconds since the epoch
  std::atomic<std::uint64_t> size{0};   // bytes usable now (<= the file's size): published
                                        // by one release store after the file grew
  std::uint64_t directory_offset = 0;   // where the DirectoryEntry array starts
  std::uint32_t directory_capacity = 0; // how many entries it has
  std::uint32_t directory_entry_bytes = 0;  // sizeof(DirectoryEntry)
  std::uint64_t heap_offset = 0;        // where the allocator's memory starts
  std::atomic<std::uint64_t> heap_size{0};  // size - heap_offset: the bytes it manages now
                                            // (stored after size; repaired by a recovery)
  std::atomic<std::uint32_t> persist{0};    // 1: the creator will not remove it
  std::atomic<std::uint32_t> read_only{0};  // 1: the heap was found corrupt after a crash;
                                            // allocations refuse, see read_only_reason
  std::atomic<std::uint64_t> heap_recoveries{0};  // allocator locks taken over from a dead
                                                  // holder (each followed by a heap check)
  std::atomic<std::uint64_t> objects_created{0};  // counter behind generated names
  std::atomic<std::uint64_t> leaked{0};  // heap bytes given up by directory recoveries
  char name[MAX_SEGMENT_NAME + 8] = {};  // NUL-terminated, without '/'; empty if anonymous
  char read_only_reason[256] = {};       // NUL-terminated, set with read_only
  RobustMutex directory_mutex;           // held while an entry is being built
  std::uint64_t max_size = 0;            // address range every process reserves: the most
                                         // the segment can grow to
  std::uint64_t creator_start_ticks = 0;  // with creator_pid, the creator's identity
                                          // (process_identity.hpp); written first
  std::atomic<std::uint64_t> growths{0};  // times the file was grown
  std::atomic<std::uint64_t> directory_next{0};  // offset of the first DirectoryChunk in the
                                                 // heap (entries beyond the inline ones), 0: none
};

// More directory entries, in the heap: a chunk is allocated, its entries zeroed, and then
// linked by ONE release store of the previous link (header.directory_next or the previous
// chunk's `next`); chunks are never unlinked. After the chunk header: `capacity` 32-bit name
// hashes (a copy of each entry's name_hash, stored before the entry is published, so a
// lookup scans 4 bytes per entry), then, at directory_chunk_entries(capacity), `capacity`
// DirectoryEntry. Entries are taken in order (`filled`, under the directory lock).
struct DirectoryChunk {
  std::atomic<std::uint64_t> next{0};    // offset of the next chunk, 0: this is the last
  std::uint32_t capacity = 0;            // entries in this chunk
  std::atomic<std::uint32_t> filled{0};  // entries taken so far
};
static_assert(sizeof(DirectoryChunk) == 16);

// Offset of a chunk's first DirectoryEntry from the chunk's start.
constexpr std::uint64_t directory_chunk_entries(std::uint64_t capacity) noexcept {
  return sizeof(DirectoryChunk) + (capacity * 4 + 15) / 16 * 16;
}

static_assert(sizeof(std::atomic<std::uint64_t>) == 8 && sizeof(std::atomic<std::uint32_t>) == 4);
static_assert(offsetof(SegmentHeader, magic) == 0);
static_assert(offsetof(SegmentHeader, format_version) == 8);
static_assert(offsetof(SegmentHeader, creator_pid) == 16);
static_assert(offsetof(SegmentHeader, creation_time_ns) == 24);
static_assert(offsetof(SegmentHeader, size) == 32);
static_assert(offsetof(SegmentHeader, directory_offset) == 40);
static_assert(offsetof(SegmentHeader, heap_offset) == 56);
static_assert(offsetof(SegmentHeader, persist) == 72);
static_assert(offsetof(SegmentHeader, heap_recoveries) == 80);
static_assert(offsetof(SegmentHeader, name) == 104);
static_assert(offsetof(DirectoryEntry, object_offset) == 8);
static_assert(offsetof(DirectoryEntry, name) == 48);
static_assert(sizeof(DirectoryEntry) == 48 + MAX_OBJECT_NAME + 1 + 2 * TYPE_NAME_BYTES);

// The allocator (see segment.cpp, and docs/design/segment-growth.md for why it is crash
// safe). The heap is a chain of blocks from HeapHeader::first_block up to `top`, each with
// a 16-byte header giving its size (boundary tags: also its predecessor's size), so the
// chain can be walked and adjacent free blocks merged. Free blocks are on segregated
// doubly linked lists by size (the links live in the free block itself). Freed blocks
// merge with free neighbours at once, and a free block that ends at `top` goes back to
// fresh space, so freed space serves any size again.
//
// Crash contract: the chain is the truth and changes only by single stores (a header's
// word, or `top`), each leaving a walkable chain; a block's state word is the one store
// that hands it to its owner or takes it back. Everything else (lists, bitmap, counters,
// predecessor sizes) is derived: the recovery after a holder of the allocator's lock died
// rebuilds it all from one walk of the chain. A kill leaks at most the block being handed
// out.
inline constexpr std::uint32_t HEAP_CLASSES = 176;
inline constexpr std::uint32_t BLOCK_HEADER_BYTES = 16;
inline constexpr std::uint64_t BLOCK_MIN_BYTES = 32;  // header + the free-list links
inline constexpr std::uint64_t BLOCK_TAG = 0xB10CULL << 48;     // a block's header
inline constexpr std::uint64_t REDIRECT_TAG = 0xA116ULL << 48;  // an over-aligned block's
                                                                // second header, just below
                                                                // the user pointer
inline constexpr std::uint64_t TAG_MASK = 0xFFFFULL << 48;
inline constexpr std::uint64_t STATE_MASK = 0xF;
inline constexpr std::uint64_t SIZE_MASK = ~(TAG_MASK | STATE_MASK);
enum class BlockState : std::uint64_t { allocated = 1, free = 2 };

// The 16 bytes before every block's user memory.
struct BlockHeader {
  // BLOCK_TAG | size in bytes (header included, a multiple of 16) | BlockState; or
  // REDIRECT_TAG | the distance back to the real header.
  std::atomic<std::uint64_t> word{0};
  std::atomic<std::uint64_t> prev_size{0};  // size of the block just below (0: the first);
                                            // derived, rebuilt by a recovery
};

// The links of a free block, in its first user bytes.
struct FreeLinks {
  std::atomic<std::uint64_t> next{0};  // offset of the next free block of the list, 0: none
  std::atomic<std::uint64_t> prev{0};  // offset of the previous one, 0: this is the head
};

// Free-list class c holds free blocks of at least heap_class_bytes(c) bytes (and less than
// class c + 1's): 16-byte steps up to 128, then four steps per power of two.
constexpr std::uint64_t heap_class_bytes(std::uint32_t c) noexcept {
  if (c < 8) return 16ULL * (c + 1);  // 16 .. 128 (classes 0 and 1 hold nothing: a block
                                      // needs 32)
  std::uint32_t p = 7 + (c - 8) / 4, k = (c - 8) % 4;
  return (1ULL << p) + (k + 1) * (1ULL << (p - 2));  // 160, 192, 224, 256, 320, ...
}

struct HeapHeader {
  RobustMutex mutex;                      // the allocator's lock
  std::uint64_t first_block = 0;          // offset (from the segment start) of the first block
  std::atomic<std::uint64_t> top{0};      // offset of the first never-used byte
  std::atomic<std::uint64_t> top_prev{0};  // size of the block that ends at `top` (derived)
  std::atomic<std::uint64_t> clean{0};  // offset from which the heap was never handed out
                                        // (still zero): `top` goes down when the last block
                                        // is freed, this never does
  std::atomic<std::uint64_t> free_head[HEAP_CLASSES] = {};  // per class, 0 = empty (derived)
  std::atomic<std::uint64_t> nonempty[(HEAP_CLASSES + 63) / 64] = {};  // bit c: list c has
                                                                       // blocks (derived)
  std::atomic<std::uint64_t> free_listed_bytes{0};  // bytes in free blocks (derived)
  std::atomic<std::uint64_t> allocations{0};        // live blocks (derived)
};

// FNV-1a 64: the type_hash of an entry (and nothing else; containers hash keys their own way).
constexpr std::uint64_t fnv1a64(std::string_view s,
                                std::uint64_t h = 0xcbf29ce484222325ULL) noexcept {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline std::uint64_t type_hash(std::string_view key_type, std::string_view value_type) noexcept {
  return fnv1a64(value_type, fnv1a64(std::string_view("\0", 1), fnv1a64(key_type)));
}

}  // namespace mpp::detail
