// A segment: one mapping of shared memory with mpp's header at offset 0, a directory of
// named objects, and a heap (mpp's own allocator, behind its robust mutex) for everything
// else. This is the one way mpp makes shared memory: named segments in /dev/shm for
// Managers, anonymous ones (a memfd_create file, never in /dev/shm, so they cannot leak)
// for the default Manager and standalone objects shared with forked children.
//
// Growth: a segment starts at its initial size and grows on demand up to its maximum.
// Every process reserves the maximum's address range once (MAP_NORESERVE) and the file
// grows under it, so growing never moves a mapping and never invalidates a pointer or a
// view in any process (docs/design/segment-growth.md).
//
// The binary layout (header, directory, ObjectHeader) is in segment_format.hpp, readable
// without the C++ types of the objects; mpp-inspect depends on it.
//
// Ownership: a named segment that was not persisted is removed when its creator has ended
// or released it (in any way, even SIGKILL) and no process maps it any more: at once when
// the creator releases its last handle and no one else uses it, else by the creator's
// tracker process (segment_tracker.hpp) within 0.1 s of its last user's end.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

class Segment {
 public:
  struct CreateOptions {
    unsigned mode = 0600;      // set with fchmod, whatever the umask
    bool persist = false;      // keep the segment after the creator releases it
    unsigned directory_entries = 32;  // entries made at creation; more are added in the
                                      // heap as objects are named (no fixed cap)
    std::size_t max_bytes = 0;  // the most it may grow to; 0: automatic (auto_max_bytes)
  };

  // The maximum a segment gets when none is given: the size of the filesystem that holds
  // it (/dev/shm for a named one; physical memory for an anonymous one), and never less
  // than `bytes`. The file can never outgrow that anyway; reserving the address range
  // costs no memory.
  static std::size_t auto_max_bytes(std::size_t bytes, bool anonymous);

  // Creates the named segment /dev/shm/<name> of `bytes` bytes (growable up to
  // options.max_bytes), reserving every page of the initial size (posix_fallocate), so that
  // a full /dev/shm is an error here and not a SIGBUS later. Throws ValueError for a bad
  // name (empty, '/', too long) or a max below `bytes`, FileExistsError if it exists,
  // OSError / SegmentFull (no room in /dev/shm).
  static std::shared_ptr<Segment> create(const std::string& name, std::size_t bytes,
                                         CreateOptions options);
  static std::shared_ptr<Segment> create(const std::string& name, std::size_t bytes) {
    return create(name, bytes, CreateOptions{});
  }

  // How long attach() waits, by default, for a segment whose creator is alive and still
  // building it (reserving a large initial size takes seconds).
  static constexpr std::chrono::milliseconds kAttachWait{30'000};

  // Opens an existing named segment. Throws FileNotFoundError when it does not exist and
  // SegmentError when the file is not an mpp segment of this format version (foreign,
  // empty, truncated, corrupt) — never crashes on such a file. While the segment's creator
  // is alive and still building it, waits (up to `wait`), then throws SegmentError "still
  // being created by pid N"; a creator that died before finishing it is named too.
  static std::shared_ptr<Segment> attach(const std::string& name,
                                         std::chrono::milliseconds wait = kAttachWait);

  // A private segment in a memfd (never in /dev/shm), shared with children forked after
  // it. Same layout as a named one. `max_bytes` 0 means `bytes` (a fixed segment, whose
  // file descriptor is closed at once); a growable one keeps its descriptor (close-on-exec)
  // to grow with, and mpp-inspect reads it through /proc/PID/fd.
  static std::shared_ptr<Segment> anonymous(std::size_t bytes, unsigned directory_entries = 8,
                                             std::size_t max_bytes = 0);

  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  const std::string& name() const noexcept;   // empty for anonymous segments
  std::size_t size() const noexcept;           // bytes usable now (grows)
  std::size_t max_size() const noexcept;       // the most it can grow to
  // Bytes the heap can still hand out: free space in the current size plus the room left
  // to grow (which a full /dev/shm can deny: SegmentFull then says so).
  std::size_t free_bytes() const;
  bool is_creator() const noexcept;            // this process created it (not a fork of it)
  void persist() noexcept;                     // keep it in /dev/shm after the creator ends
  SegmentHeader& header() noexcept;

  // True once the heap was found corrupt after a crash: allocate() then throws SegmentError
  // (with header().read_only_reason), deallocate() leaks; objects stay readable.
  bool read_only() const noexcept;

  // Runs the allocator's heap check now (taking its lock); false marks the segment
  // read-only. Used after recoveries and by tests.
  bool check_heap();

  // Throws ValueError unless `name` can name a segment: 1..MAX_SEGMENT_NAME bytes, no '/',
  // no NUL, not "." or "..".
  static void validate_name(const std::string& name);

  // Removes /dev/shm/<name> (what the creator does on release). Returns false if it was
  // not there. Processes that map it keep their mapping.
  static bool unlink(const std::string& name);

  // Heap. allocate() grows the segment when its current size has no room, and throws
  // SegmentFull (saying whether the maximum is reached or /dev/shm is full) and changes
  // nothing when it cannot. Both
  // survive a holder of the allocator's lock being killed: the lock is recovered and the
  // heap checked; a heap found corrupt turns the segment read-only (SegmentError).
  void* allocate(std::size_t bytes, std::size_t align = 16);
  // As allocate(), with the `bytes` returned all zero. Cheap for fresh heap space, which is
  // zero already (a segment starts as a zero-filled file and fresh space was never handed
  // out): its pages are not even touched. Only a reused block is cleared.
  void* allocate_zeroed(std::size_t bytes, std::size_t align = 16);
  void deallocate(void* p) noexcept;

  // Position independence: every pointer stored inside the segment is an offset from its
  // base, since each process maps it at its own address.
  std::uint64_t offset_of(const void* p) const noexcept {
    return static_cast<std::uint64_t>(static_cast<const char*>(p) - base_);
  }
  void* at(std::uint64_t offset) const noexcept { return base_ + offset; }
  template <class T>
  T* at(std::uint64_t offset) const noexcept {
    return static_cast<T*>(at(offset));
  }

  // What a named object is: its directory entry's identity.
  struct ObjectSpec {
    std::string_view name;       // empty: a fresh unique name is made ("lock#3")
    ObjectKind kind;
    std::string key_type;        // detail::type_fingerprint<K>() or empty
    std::string value_type;      // detail::type_fingerprint<V>() or empty
    std::size_t bytes;           // size of the object's state (it starts with an ObjectHeader)
    std::size_t align = alignof(std::max_align_t);
    bool zeroed = false;  // the memory reaches `construct` zero-filled (allocate_zeroed)
  };

  // Finds the named object, or allocates `spec.bytes`, runs `construct(memory)` and then
  // publishes the directory entry (so no process ever sees a half-built object). Returns
  // the object's memory and whether this call created it. The directory has no fixed cap:
  // it adds entries in the heap as needed. Throws TypeMismatch (naming both kinds/types)
  // when the name exists with another kind or other types, SegmentFull when there is no
  // room in the heap, ValueError for a bad name.
  std::pair<void*, bool> find_or_create(const ObjectSpec& spec,
                                        const std::function<void(void*)>& construct);

  // The named object's memory, or nullptr. Throws TypeMismatch as find_or_create.
  void* find(const ObjectSpec& spec);

  struct Impl;  // opaque: the mapping and its bookkeeping (runtime/segment.cpp)

  // Test hook: when set, called at each named point between the stores of a growth and of a
  // heap change, so that a test can SIGKILL its process there and prove the crash contract
  // store by store. Null (and never set) outside tests.
  static inline void (*crash_point)(const char* point) = nullptr;

 private:
  explicit Segment(std::unique_ptr<Impl> impl);
  DirectoryEntry* free_entry(std::uint32_t*& hash_slot);  // with the directory lock held
  // allocate(), telling whether the block is fresh heap space (never handed out: zero).
  void* allocate_block(std::size_t bytes, std::size_t align, bool& fresh);
  std::unique_ptr<Impl> impl_;
  char* base_;  // the mapping's address in this process (inline offset arithmetic)
};

}  // namespace mpp::detail
