#include "mpp/detail/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>

#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/segment_check.hpp"
#include "mpp/detail/segment_tracker.hpp"
#include "mpp/detail/shm_bounds.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

// Why the allocator is mpp's own and not Boost.Interprocess's rbtree_best_fit (the first
// version used it, behind a robust mutex family of mpp's own): rbtree_best_fit rebalances
// an intrusive red-black tree and splits/merges blocks in many stores, so a process
// SIGKILLed inside allocate() leaves a tree that the next allocate() follows into a
// segfault (segment_test reproduced it within a few hundred kills), and its
// check_sanity() does not notice. mpp's heap keeps one structure that every kill leaves
// whole, the chain of block headers (changed by single stores), and treats its free lists
// as derived data that a recovery rebuilds from the chain (segment_format.hpp).

// The smallest class whose blocks all have at least `total` bytes.
constexpr std::uint32_t class_for(std::uint64_t total) {
  if (total <= 128) return static_cast<std::uint32_t>(total / 16 - 1);
  unsigned p = 63 - static_cast<unsigned>(__builtin_clzll(total - 1));
  std::uint64_t step = 1ULL << (p - 2);
  auto k = static_cast<std::uint32_t>((total - (1ULL << p) + step - 1) / step - 1);
  return 8 + (p - 7) * 4 + k;
}

// The class a free block of `size` bytes is listed in: the largest whose minimum it meets.
constexpr std::uint32_t floor_class(std::uint64_t size) {
  std::uint32_t c = class_for(size);
  return heap_class_bytes(c) == size ? c : c - 1;
}

constexpr std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void copy_cut(char* dst, std::size_t cap, std::string_view src) {
  std::size_t n = std::min(cap - 1, src.size());
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

std::string shm_path(const std::string& name) { return "/" + name; }

// The name every anonymous segment's memfd carries ("/memfd:mpp-segment (deleted)" in
// /proc/PID/maps), by which mpp-inspect finds them.
constexpr const char* kMemfdName = "mpp-segment";

// Where the directory and heap go for a segment of `bytes` with `entries` entries.
struct Layout {
  std::size_t directory_offset, heap_offset, heap_size;
};

Layout layout_for(std::size_t bytes, unsigned entries, const std::string& what) {
  Layout l{};
  l.directory_offset = align_up(sizeof(SegmentHeader), 64);
  l.heap_offset = align_up(l.directory_offset + entries * sizeof(DirectoryEntry), 64);
  std::size_t min_heap = align_up(sizeof(HeapHeader), 64) + 4096;
  if (bytes < l.heap_offset + min_heap) {
    throw ValueError(what + ": " + std::to_string(bytes) + " bytes is too small; a segment with " +
                     std::to_string(entries) + " directory entries needs at least " +
                     std::to_string(l.heap_offset + min_heap) + " bytes");
  }
  l.heap_size = bytes - l.heap_offset;
  return l;
}

}  // namespace

struct Segment::Impl {
  std::string name;          // empty: anonymous
  void* base = nullptr;
  std::size_t reserved = 0;  // bytes of address space mapped: the segment's max_size
  int fd = -1;               // the file, kept to grow it; -1 for a fixed anonymous segment
  pid_t creator = 0;         // this process's pid if it created the segment, else 0
  bool persist = false;

  SegmentHeader& header() const { return *static_cast<SegmentHeader*>(base); }
  std::uint64_t size() const { return header().size.load(std::memory_order_acquire); }
  HeapHeader& heap() const {
    return *reinterpret_cast<HeapHeader*>(static_cast<char*>(base) + header().heap_offset);
  }
  BlockHeader* block(std::uint64_t off) const {
    return reinterpret_cast<BlockHeader*>(static_cast<char*>(base) + off);
  }
  DirectoryEntry* directory() const {
    return reinterpret_cast<DirectoryEntry*>(static_cast<char*>(base) + header().directory_offset);
  }
  std::string display_name() const { return name.empty() ? std::string("(anonymous)") : name; }

  ~Impl() {
    if (base) munmap(base, reserved);
    if (fd >= 0) close(fd);
    if (!name.empty() && creator != 0 && creator == getpid() && !persist) {
      release_created_segment(name);  // removed now, or by the tracker once no one maps it
    }
  }
};

namespace {

void at_crash_point(const char* point) {
  if (Segment::crash_point) Segment::crash_point(point);
}

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Reserves `max` bytes of address space over `fd` (pages past the file's end are never
// touched: the file grows under the mapping).
void* map_reserved(int fd, std::size_t max) {
  return mmap(nullptr, max, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
}

// The creator's identity goes into the file before anything else (and before the pages are
// reserved, which takes seconds for a large segment), so that an attacher that meets the
// file while the magic is still 0 can tell "being built by a live process" from "foreign".
int write_creator(int fd) {
  std::int32_t pid = self_pid();
  std::uint64_t ticks = self_start_ticks();
  if (pwrite(fd, &pid, sizeof pid, offsetof(SegmentHeader, creator_pid)) != sizeof pid ||
      pwrite(fd, &ticks, sizeof ticks, offsetof(SegmentHeader, creator_start_ticks)) != sizeof ticks) {
    return errno ? errno : EIO;
  }
  return 0;
}

// Lays out a fresh, zero-filled mapping: header, directory, heap; the magic goes last.
void format(void* base, std::size_t size, std::size_t max, const std::string& name, bool persist,
            const Layout& l, unsigned entries, bool anonymous) {
  auto* h = new (base) SegmentHeader();
  h->creator_pid = self_pid();
  h->creator_start_ticks = self_start_ticks();
  h->format_version = FORMAT_VERSION;
  h->header_bytes = sizeof(SegmentHeader);
  h->anonymous = anonymous ? 1 : 0;
  h->creation_time_ns = now_ns();
  h->size.store(size);
  h->max_size = max;
  h->directory_offset = l.directory_offset;
  h->directory_capacity = entries;
  h->directory_entry_bytes = sizeof(DirectoryEntry);
  h->heap_offset = l.heap_offset;
  h->heap_size.store(size - l.heap_offset);
  h->persist.store(persist ? 1 : 0);
  copy_cut(h->name, sizeof h->name, name);
  auto* dir = reinterpret_cast<DirectoryEntry*>(static_cast<char*>(base) + l.directory_offset);
  for (unsigned i = 0; i < entries; ++i) new (&dir[i]) DirectoryEntry();
  auto* heap = new (static_cast<char*>(base) + l.heap_offset) HeapHeader();
  heap->first_block = l.heap_offset + align_up(sizeof(HeapHeader), 64);
  heap->top.store(heap->first_block);
  heap->clean.store(heap->first_block);
  h->magic.store(SEGMENT_MAGIC, std::memory_order_release);
}

// The maximum asked for, or the automatic one; checked against the initial size.
std::size_t max_for(std::size_t bytes, std::size_t asked, bool anonymous, const std::string& what) {
  std::size_t max = asked ? asked : Segment::auto_max_bytes(bytes, anonymous);
  if (max < bytes) {
    throw ValueError(what + ": max_bytes (" + std::to_string(max) + ") is below the initial size (" +
                     std::to_string(bytes) + "); give a max of at least the size, or 0 for automatic");
  }
  return align_up(max, page_size());
}

}  // namespace

std::size_t Segment::auto_max_bytes(std::size_t bytes, bool anonymous) {
  std::size_t room = 0;
  if (anonymous) {
    long pages = sysconf(_SC_PHYS_PAGES);
    if (pages > 0) room = static_cast<std::size_t>(pages) * page_size();
  } else if (struct statvfs fs {}; statvfs("/dev/shm", &fs) == 0) {
    room = static_cast<std::size_t>(fs.f_blocks) * fs.f_frsize;
  }
  if (room == 0) room = std::size_t{16} << 30;  // cannot tell: a large figure
  return std::max(bytes, room);
}

void Segment::validate_name(const std::string& name) {
  if (name.empty()) throw ValueError("a segment name cannot be empty");
  if (name.size() > MAX_SEGMENT_NAME) {
    throw ValueError("segment name '" + name.substr(0, 40) + "...' is " +
                     std::to_string(name.size()) + " bytes; the limit is " +
                     std::to_string(MAX_SEGMENT_NAME));
  }
  if (name.find('/') != std::string::npos || name.find('\0') != std::string::npos) {
    throw ValueError("segment name '" + name + "' contains '/' or NUL; use a plain name like \"jobs\"");
  }
  if (name == "." || name == "..") throw ValueError("'" + name + "' cannot name a segment");
}

bool Segment::unlink(const std::string& name) {
  validate_name(name);
  if (shm_unlink(shm_path(name).c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_os_error(errno, "removing segment '" + name + "'");
}

Segment::Segment(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), base_(static_cast<char*>(impl_->base)) {}
Segment::~Segment() = default;

std::shared_ptr<Segment> Segment::create(const std::string& name, std::size_t bytes,
                                         CreateOptions options) {
  validate_name(name);
  const std::string what = "creating segment '" + name + "'";
  Layout l = layout_for(bytes, options.directory_entries, what);
  const std::size_t max = max_for(bytes, options.max_bytes, false, what);
  // A segment that is not persisted is made by this process's tracker, which then removes
  // it once this process has ended (however) and no one maps it.
  int fd = options.persist
               ? shm_open(shm_path(name).c_str(), O_RDWR | O_CREAT | O_EXCL, options.mode & 0777)
               : open_tracked_segment(name, options.mode & 0777);
  if (fd < 0) {
    int e = errno;
    if (e == EEXIST) {
      throw FileExistsError(e, "segment '" + name + "' already exists in /dev/shm; attach to it, "
                               "or remove it (mpp-inspect rm " + name + ")");
    }
    throw_os_error(e, what);
  }
  auto fail = [&](int e, const std::string& step) {
    close(fd);
    shm_unlink(shm_path(name).c_str());
    if (e == ENOSPC) {
      throw SegmentFull(what + " of " + std::to_string(bytes) +
                        " bytes: /dev/shm has no room for it (" + step +
                        "); free space there or ask for less");
    }
    throw_os_error(e, what + ": " + step);
  };
  if (fchmod(fd, options.mode & 0777) != 0) fail(errno, "fchmod");
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) fail(errno, "ftruncate");
  if (int e = write_creator(fd); e != 0) fail(e, "pwrite");
  // Reserve every page now: on tmpfs a page first touched when the filesystem is full is a
  // SIGBUS in whoever touches it, which is no way to report "no space".
  if (int e = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) fail(e, "posix_fallocate");
  void* base = map_reserved(fd, max);
  if (base == MAP_FAILED) fail(errno, "mmap of " + std::to_string(max) + " bytes of address space");
  at_crash_point("create:before-format");

  auto im = std::make_unique<Impl>();
  im->name = name;
  im->base = base;
  im->reserved = max;
  im->fd = fd;
  im->creator = getpid();
  im->persist = options.persist;
  format(base, bytes, max, name, options.persist, l, options.directory_entries, false);
  return std::shared_ptr<Segment>(new Segment(std::move(im)));
}

std::shared_ptr<Segment> Segment::attach(const std::string& name, std::chrono::milliseconds wait) {
  validate_name(name);
  int fd = shm_open(shm_path(name).c_str(), O_RDWR, 0);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) {
      throw FileNotFoundError(e, "no segment named '" + name + "' in /dev/shm (was it created, "
                                 "and is its creator still running or was it persisted?)");
    }
    throw_os_error(e, "opening segment '" + name + "'");
  }
  auto refuse = [&](const std::string& problem) {
    close(fd);
    throw SegmentError("cannot attach to '/dev/shm/" + name + "': " + problem);
  };
  // A creator writes its identity first, then reserves the pages (seconds for a large
  // segment), formats, and stores the magic last. While the magic is 0: a live creator is
  // waited for (up to `wait`); an unnamed one (the first microseconds) briefly.
  // A header that names a size beyond the file is a growth seen half-way: looked at again.
  const auto start = std::chrono::steady_clock::now();
  const auto brief = start + std::chrono::milliseconds(500);
  const auto patient = start + wait;
  for (int looks = 0;; ++looks) {
    struct stat st {};
    if (fstat(fd, &st) != 0) {
      int e = errno;
      close(fd);
      throw_os_error(e, "fstat of segment '" + name + "'");
    }
    if (st.st_nlink == 0) {  // removed by its tracker as we opened it: its users are gone
      close(fd);
      throw FileNotFoundError(ENOENT, "segment '" + name + "' was removed as it was being attached "
                                      "(its creator and every process using it had ended)");
    }
    auto file_size = static_cast<std::size_t>(st.st_size);
    std::string problem;
    auto deadline = brief;
    pid_t builder = 0;
    if (file_size < sizeof(SegmentHeader)) {
      problem = file_size == 0 ? "it is empty"
                               : "it is truncated (" + std::to_string(file_size) + " bytes)";
      if (file_size != 0) refuse(problem);
    } else {
      void* base = mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (base == MAP_FAILED) {
        int e = errno;
        close(fd);
        throw_os_error(e, "mapping segment '" + name + "'");
      }
      auto& h = *static_cast<SegmentHeader*>(base);
      problem = header_problem(h, file_size);
      const std::size_t max = h.max_size;
      const bool unfinished = h.magic.load(std::memory_order_acquire) == 0;
      const bool grown = !unfinished && h.size.load() > file_size;
      const pid_t pid = h.creator_pid;
      const std::uint64_t ticks = h.creator_start_ticks;
      munmap(base, file_size);
      if (problem.empty()) {
        void* whole = map_reserved(fd, max);
        if (whole == MAP_FAILED) {
          int e = errno;
          close(fd);
          throw_os_error(e, "reserving " + std::to_string(max) + " bytes of address space for "
                            "segment '" + name + "'");
        }
        auto im = std::make_unique<Impl>();
        im->name = name;
        im->base = whole;
        im->reserved = max;
        im->fd = fd;
        return std::shared_ptr<Segment>(new Segment(std::move(im)));
      }
      if (unfinished && pid > 0) {
        if (!process_alive(pid, ticks)) {
          refuse("its creator (pid " + std::to_string(pid) + ") died before finishing it; "
                 "remove it (mpp-inspect rm " + name + ")");
        }
        builder = pid;
        deadline = patient;
        problem = "it is still being created by pid " + std::to_string(pid) + " (waited " +
                  std::to_string(wait.count()) + " ms; try again later)";
      } else if (!unfinished && (!grown || looks > 3)) {
        refuse(problem);
      }
    }
    if (std::chrono::steady_clock::now() > deadline) refuse(problem);
    std::this_thread::sleep_for(std::chrono::milliseconds(builder ? 5 : 1));
  }
}

std::shared_ptr<Segment> Segment::anonymous(std::size_t bytes, unsigned directory_entries,
                                            std::size_t max_bytes) {
  const std::string what = "creating an anonymous segment";
  Layout l = layout_for(bytes, directory_entries, what);
  const std::size_t max = max_for(bytes, max_bytes ? max_bytes : bytes, true, what);
  // A memfd, not MAP_ANONYMOUS memory: it is inherited by forked children the same way, but
  // it can grow (posix_fallocate) and mpp-inspect can find it through /proc.
  int fd = memfd_create(kMemfdName, MFD_CLOEXEC);
  if (fd < 0) throw_os_error(errno, what + ": memfd_create");
  auto fail = [&](int e, const std::string& step) {
    close(fd);
    if (e == ENOSPC || e == ENOMEM) {
      throw SegmentFull(what + " of " + std::to_string(bytes) + " bytes: no memory for it (" +
                        step + ")");
    }
    throw_os_error(e, what + ": " + step);
  };
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) fail(errno, "ftruncate");
  if (int e = posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) fail(e, "posix_fallocate");
  void* base = map_reserved(fd, max);
  if (base == MAP_FAILED) fail(errno, "mmap");
  auto im = std::make_unique<Impl>();
  im->base = base;
  im->reserved = max;
  if (max > bytes) {
    im->fd = fd;  // to grow with
  } else {
    close(fd);  // a fixed segment needs no descriptor (and a program may make thousands)
  }
  format(base, bytes, max, {}, false, l, directory_entries, true);
  return std::shared_ptr<Segment>(new Segment(std::move(im)));
}

const std::string& Segment::name() const noexcept { return impl_->name; }
std::size_t Segment::size() const noexcept { return impl_->size(); }
std::size_t Segment::max_size() const noexcept { return impl_->header().max_size; }
bool Segment::is_creator() const noexcept { return impl_->creator != 0 && impl_->creator == getpid(); }
SegmentHeader& Segment::header() noexcept { return impl_->header(); }
bool Segment::read_only() const noexcept {
  return impl_->header().read_only.load(std::memory_order_acquire) != 0;
}

void Segment::persist() noexcept {
  impl_->persist = true;
  impl_->header().persist.store(1);
}

namespace {

void mark_read_only(SegmentHeader& h, const std::string& why) {
  copy_cut(h.read_only_reason, sizeof h.read_only_reason, why);
  h.read_only.store(1, std::memory_order_release);
}

// The heap's operations, for a holder of the allocator's lock. Offsets are from the
// segment's start. See segment_format.hpp for the crash contract these keep: the chain of
// headers changes only by single stores, each leaving it walkable, and everything else is
// rebuilt from it by rebuild() when a holder died.
// What the heap's operations throw when a header, a link or `top` they are about to follow
// is not sound: only a write from outside mpp makes one. The caller (holding the lock)
// rebuilds the derived structures from the chain, or turns the segment read-only.
struct HeapCorrupt {
  std::string what;
};

// Out of line: the checks on the heap's hot paths stay a few inlined compares.
[[noreturn, gnu::cold, gnu::noinline]] void heap_corrupt(const char* what, std::uint64_t value) {
  throw HeapCorrupt{std::string(what) + " (" + std::to_string(value) + ")"};
}

class Heap {
 public:
  // Reads and checks the heap's bounds once: an operation then checks each offset it
  // follows against these locals (top_ moves only by this operation's own stores).
  explicit Heap(const Segment::Impl& im) : im_(im), heap_(im.heap()), first_(heap_.first_block) {
    if (first_ != first_block_of(im.header()) || first_ % 16 != 0) heap_corrupt("the heap's first block moved", first_);
    top_ = heap_.top.load(std::memory_order_relaxed);
    if (top_ < first_ || top_ > im.size() || top_ % 16 != 0) heap_corrupt("the heap's top is outside the heap", top_);
  }

  static std::uint64_t first_block_of(const SegmentHeader& h) {
    return h.heap_offset + align_up(sizeof(HeapHeader), 64);
  }

  static std::uint64_t size_of(std::uint64_t w) { return w & SIZE_MASK; }
  static bool is_free(std::uint64_t w) { return (w & STATE_MASK) == static_cast<std::uint64_t>(BlockState::free); }
  static std::uint64_t word(std::uint64_t size, BlockState st) {
    return BLOCK_TAG | size | static_cast<std::uint64_t>(st);
  }
  BlockHeader* at(std::uint64_t off) const { return im_.block(off); }
  std::uint64_t word_at(std::uint64_t off) const { return at(off)->word.load(std::memory_order_relaxed); }

  // `top`, checked when the Heap was made: inside the segment's current size, aligned.
  std::uint64_t top() const { return top_; }

  // The header word at `off` if `off` is the start of a block whose header is sound (below
  // `top`, aligned, tagged, of a known state, a size of at least BLOCK_MIN_BYTES that ends
  // at or below `top`; a size is a multiple of 16 by its mask), else 0. One unsigned compare
  // bounds `off` on both sides.
  [[gnu::always_inline]] std::uint64_t sound_word(std::uint64_t off) const {
    if (off - first_ >= top_ - first_ || off % 16 != 0) return 0;
    return header_word(off);
  }

  // sound_word() for an `off` the caller knows is aligned and in [first, top): a neighbour
  // of a sound block, found from its size or a prev_size that was bounded.
  [[gnu::always_inline]] std::uint64_t header_word(std::uint64_t off) const {
    const std::uint64_t w = word_at(off), size = size_of(w);
    const std::uint64_t kind = (w & (TAG_MASK | STATE_MASK)) - (BLOCK_TAG | kAllocated);
    return kind <= kFree - kAllocated && size >= BLOCK_MIN_BYTES && size <= top_ - off ? w : 0;
  }

  // Whether `off` is an allocated block of this heap (what deallocate() accepts): its header
  // word, else 0.
  std::uint64_t live_word(std::uint64_t off) const {
    const std::uint64_t w = sound_word(off);
    return (w & STATE_MASK) == kAllocated ? w : 0;
  }

  // A block of exactly `n` bytes (a multiple of 16, at least BLOCK_MIN_BYTES) from the free
  // lists, split if it is larger; 0 when none is large enough.
  std::uint64_t take_free(std::uint64_t n) {
    const std::uint32_t c = first_nonempty(class_for(n));
    if (c >= HEAP_CLASSES) return 0;
    const std::uint64_t off = heap_.free_head[c].load(std::memory_order_relaxed);
    if (off == 0) heap_corrupt("a free list is marked non-empty but is empty, class", c);
    std::uint64_t size = listed_size(off, c);
    unlink_head(off, c, size);
    if (size - n >= kMinSplit) {
      const std::uint64_t rest = off + n;
      at(rest)->word.store(word(size - n, BlockState::free), std::memory_order_relaxed);
      at(rest)->prev_size.store(n, std::memory_order_relaxed);
      set_prev_size(rest + size - n, size - n);
      at_crash_point("heap:before-split");
      at(off)->word.store(word(n, BlockState::free), std::memory_order_release);  // splits
      push(rest, size - n);
      size = n;
    }
    at_crash_point("heap:before-claim");
    at(off)->word.store(word(size, BlockState::allocated), std::memory_order_release);  // hands it out
    heap_.allocations.fetch_add(1, std::memory_order_relaxed);
    return off;
  }

  // A block of `n` bytes from never-used space below `limit`; 0 if it does not fit. Sets
  // `fresh` when the block was never handed out before (its bytes are zero).
  std::uint64_t take_top(std::uint64_t n, std::uint64_t limit, bool& fresh) {
    const std::uint64_t top = top_;
    if (limit < top || limit - top < n) return 0;
    at(top)->word.store(word(n, BlockState::allocated), std::memory_order_relaxed);
    at(top)->prev_size.store(heap_.top_prev.load(std::memory_order_relaxed), std::memory_order_relaxed);
    at_crash_point("heap:before-top");
    heap_.top.store(top + n, std::memory_order_release);  // publishes (and hands out) the block
    top_ = top + n;
    heap_.top_prev.store(n, std::memory_order_relaxed);
    const std::uint64_t clean = heap_.clean.load(std::memory_order_relaxed);
    fresh = top >= clean;
    if (top + n > clean) heap_.clean.store(top + n, std::memory_order_relaxed);
    heap_.allocations.fetch_add(1, std::memory_order_relaxed);
    return top;
  }

  // Frees the allocated block at `off`, whose header word `w` live_word() returned: merges
  // it with free neighbours, and gives it back to never-used space if it ends at `top`.
  void release(std::uint64_t off, std::uint64_t w) {
    const std::uint64_t top = top_;
    std::uint64_t size = size_of(w);
    const std::uint64_t next = off + size;
    // Checked before anything changes. `next` is aligned and above `off` (a sound block).
    const std::uint64_t nw = next < top ? block_word(next) : 0;
    at_crash_point("heap:before-release");
    at(off)->word.store(word(size, BlockState::free), std::memory_order_release);  // takes it back
    heap_.allocations.fetch_sub(1, std::memory_order_relaxed);
    if (is_free(nw)) {
      const std::uint64_t nsize = size_of(nw);
      unlink(next, nsize);
      at_crash_point("heap:before-merge-next");
      size += nsize;
      at(off)->word.store(word(size, BlockState::free), std::memory_order_release);
    }
    if (const std::uint64_t psize = at(off)->prev_size.load(std::memory_order_relaxed);
        psize != 0 && psize <= off - first_ && psize % 16 == 0) {
      // prev_size is derived: a block there that is not a sound free block of that size is
      // not merged with. The bounds just checked put `prev` aligned in [first, off).
      const std::uint64_t prev = off - psize;
      const std::uint64_t pw = header_word(prev);
      if (size_of(pw) == psize && is_free(pw)) {
        unlink(prev, psize);
        at_crash_point("heap:before-merge-prev");
        size += psize;
        off = prev;
        at(off)->word.store(word(size, BlockState::free), std::memory_order_release);
      }
    }
    if (off + size == top) {
      at_crash_point("heap:before-lower-top");
      heap_.top.store(off, std::memory_order_release);  // back to never-used space
      top_ = off;
      heap_.top_prev.store(at(off)->prev_size.load(std::memory_order_relaxed), std::memory_order_relaxed);
    } else {
      at(off + size)->prev_size.store(size, std::memory_order_relaxed);
      push(off, size);
    }
  }

  // After a holder of the lock died: walks the chain (the only structure a kill cannot
  // leave half-changed), merges runs of free blocks, and rebuilds everything derived from
  // it: predecessor sizes, free lists, bitmap, counters, `top` (a free last block goes back
  // to never-used space). Returns what is wrong with the chain, or empty.
  std::string rebuild() {
    const std::uint64_t top = heap_.top.load(std::memory_order_relaxed);
    if (std::string p = chain_problem(top); !p.empty()) return p;
    for (auto& head : heap_.free_head) head.store(0, std::memory_order_relaxed);
    for (auto& bits : heap_.nonempty) bits.store(0, std::memory_order_relaxed);
    heap_.free_listed_bytes.store(0, std::memory_order_relaxed);
    std::uint64_t live = 0, prev = 0, prev_size = 0;
    bool prev_free = false;
    for (std::uint64_t off = heap_.first_block; off < top;) {
      const std::uint64_t w = word_at(off), size = size_of(w);
      if (is_free(w) && prev_free) {  // a run of free blocks becomes one
        prev_size += size;
        at(prev)->word.store(word(prev_size, BlockState::free), std::memory_order_release);
      } else {
        if (prev_free) push(prev, prev_size);
        at(off)->prev_size.store(prev_size, std::memory_order_relaxed);
        prev = off;
        prev_size = size;
        prev_free = is_free(w);
        if (!prev_free) ++live;
      }
      off += size;
    }
    if (prev_free) {
      heap_.top.store(prev, std::memory_order_release);
      heap_.top_prev.store(at(prev)->prev_size.load(std::memory_order_relaxed), std::memory_order_relaxed);
    } else {
      heap_.top_prev.store(prev_size, std::memory_order_relaxed);
    }
    if (heap_.clean.load(std::memory_order_relaxed) < top) heap_.clean.store(top, std::memory_order_relaxed);
    heap_.allocations.store(live, std::memory_order_relaxed);
    return {};
  }

 private:
  static constexpr std::uint64_t kMinSplit = 64;  // smaller remainders stay in the block

  // heap_class_bytes(c) for every class, and past the last one a bound no block reaches.
  static constexpr auto kClassBytes = [] {
    std::array<std::uint64_t, HEAP_CLASSES + 1> t{};
    for (std::uint32_t c = 0; c < HEAP_CLASSES; ++c) t[c] = heap_class_bytes(c);
    t[HEAP_CLASSES] = ~std::uint64_t{0};
    return t;
  }();
  // How many sizes class c spans: size - kClassBytes[c] < kClassSpan[c] is the class test.
  static constexpr auto kClassSpan = [] {
    std::array<std::uint64_t, HEAP_CLASSES> t{};
    for (std::uint32_t c = 0; c < HEAP_CLASSES; ++c) t[c] = kClassBytes[c + 1] - kClassBytes[c];
    return t;
  }();
  static constexpr std::uint64_t kAllocated = static_cast<std::uint64_t>(BlockState::allocated);
  static constexpr std::uint64_t kFree = static_cast<std::uint64_t>(BlockState::free);

  // The chain from first_block must be headers of known state whose sizes land exactly on
  // `top`.
  std::string chain_problem(std::uint64_t top) const {
    if (top < heap_.first_block || top > im_.size() || top % 16 != 0) return "the heap's top is outside the heap";
    for (std::uint64_t off = heap_.first_block; off < top;) {
      const std::uint64_t w = word_at(off), size = size_of(w), st = w & STATE_MASK;
      if ((w & TAG_MASK) != BLOCK_TAG || size < BLOCK_MIN_BYTES || size % 16 != 0 || size > top - off ||
          (st != static_cast<std::uint64_t>(BlockState::free) && st != static_cast<std::uint64_t>(BlockState::allocated))) {
        return "the block at offset " + std::to_string(off) + " has a corrupt header";
      }
      off += size;
    }
    return {};
  }

  void set_prev_size(std::uint64_t off, std::uint64_t size) {
    if (off < top_) {
      at(off)->prev_size.store(size, std::memory_order_relaxed);
    } else {
      heap_.top_prev.store(size, std::memory_order_relaxed);
    }
  }

  FreeLinks* links(std::uint64_t off) const {
    return reinterpret_cast<FreeLinks*>(static_cast<char*>(im_.base) + off + BLOCK_HEADER_BYTES);
  }

  std::uint32_t first_nonempty(std::uint32_t c) const {
    for (std::uint32_t i = c / 64; i < std::size(heap_.nonempty); ++i) {
      std::uint64_t bits = heap_.nonempty[i].load(std::memory_order_relaxed);
      if (i == c / 64) bits &= ~std::uint64_t{0} << (c % 64);
      if (bits) return i * 64 + static_cast<std::uint32_t>(__builtin_ctzll(bits));
    }
    return HEAP_CLASSES;
  }

  // The header word of the sound block at `off`, an aligned offset in [first, top)
  // (HeapCorrupt if it is not one).
  std::uint64_t block_word(std::uint64_t off) const {
    const std::uint64_t w = header_word(off);
    if (w == 0) heap_corrupt("a block has a corrupt header, at offset", off);
    return w;
  }

  // The size of the block at `off` if it is a sound free block of class `c` (below `top`,
  // aligned, tagged free, a size of class `c` that ends at or below `top`): what a list
  // link may name. HeapCorrupt otherwise. Two unsigned compares bound the offset and the
  // size (class c's sizes are at least 32, so a size in it is at least BLOCK_MIN_BYTES).
  [[gnu::always_inline]] std::uint64_t listed_size(std::uint64_t off, std::uint32_t c) const {
    if (off - first_ >= top_ - first_ || off % 16 != 0) bad_link(off);
    const std::uint64_t w = word_at(off), size = size_of(w);
    if ((w & (TAG_MASK | STATE_MASK)) != (BLOCK_TAG | kFree) || size - kClassBytes[c] >= kClassSpan[c] ||
        size > top_ - off) {
      bad_link(off);
    }
    return size;
  }

  // `off` is 0 or a sound free block listed in class `c`.
  [[gnu::always_inline]] void check_listed(std::uint64_t off, std::uint32_t c) const {
    if (off != 0) (void)listed_size(off, c);
  }

  [[noreturn, gnu::cold, gnu::noinline]] static void bad_link(std::uint64_t off) {
    heap_corrupt("a free-list link is not a free block of its class, at offset", off);
  }

  // Unlinks the head `off` (of `size` bytes) of list `c`, whose prev link is 0 by the
  // lists' invariant and is not followed.
  void unlink_head(std::uint64_t off, std::uint32_t c, std::uint64_t size) {
    const std::uint64_t next = links(off)->next.load(std::memory_order_relaxed);
    check_listed(next, c);
    heap_.free_head[c].store(next, std::memory_order_relaxed);
    if (next) {
      links(next)->prev.store(0, std::memory_order_relaxed);
    } else {
      heap_.nonempty[c / 64].fetch_and(~(std::uint64_t{1} << (c % 64)), std::memory_order_relaxed);
    }
    heap_.free_listed_bytes.fetch_sub(size, std::memory_order_relaxed);
  }

  [[gnu::always_inline]] void push(std::uint64_t off, std::uint64_t size) {
    const std::uint32_t c = floor_class(size);
    const std::uint64_t head = heap_.free_head[c].load(std::memory_order_relaxed);
    check_listed(head, c);
    links(off)->next.store(head, std::memory_order_relaxed);
    links(off)->prev.store(0, std::memory_order_relaxed);
    if (head) links(head)->prev.store(off, std::memory_order_relaxed);
    heap_.free_head[c].store(off, std::memory_order_relaxed);
    heap_.nonempty[c / 64].fetch_or(std::uint64_t{1} << (c % 64), std::memory_order_relaxed);
    heap_.free_listed_bytes.fetch_add(size, std::memory_order_relaxed);
  }

  [[gnu::always_inline]] void unlink(std::uint64_t off, std::uint64_t size) {
    const std::uint32_t c = floor_class(size);
    const std::uint64_t next = links(off)->next.load(std::memory_order_relaxed);
    const std::uint64_t prev = links(off)->prev.load(std::memory_order_relaxed);
    check_listed(next, c);
    check_listed(prev, c);
    if (prev) {
      links(prev)->next.store(next, std::memory_order_relaxed);
    } else {
      heap_.free_head[c].store(next, std::memory_order_relaxed);
      if (next == 0) heap_.nonempty[c / 64].fetch_and(~(std::uint64_t{1} << (c % 64)), std::memory_order_relaxed);
    }
    if (next) links(next)->prev.store(prev, std::memory_order_relaxed);
    heap_.free_listed_bytes.fetch_sub(size, std::memory_order_relaxed);
  }

  const Segment::Impl& im_;
  HeapHeader& heap_;
  const std::uint64_t first_;  // the first block's offset, checked
  std::uint64_t top_;          // `top`, checked, then moved only by this operation
};

// Checks the heap with the allocator's lock held (heap_problem: the chain and every list).
std::string walk_heap(const Segment::Impl& im) { return heap_problem(im.base, im.size()); }

// Under the allocator's lock, after its holder died: count it, repair what a growth cut
// short, and rebuild the heap's derived structures from the chain. A kill cannot break the
// chain, so a failure here means something else wrote over the heap; the segment then
// refuses to allocate rather than spread the damage.
// Under the allocator's lock: rebuilds the derived structures from the chain and checks the
// result, or marks the segment read-only and throws SegmentError saying `when` and why.
void rebuild_heap(Segment::Impl& im, const std::string& when) {
  std::string problem;
  try {
    problem = Heap(im).rebuild();
  } catch (const HeapCorrupt& e) {
    problem = e.what;
  }
  if (problem.empty()) problem = walk_heap(im);
  if (!problem.empty()) {
    mark_read_only(im.header(), when + ": " + problem);
    throw SegmentError("segment '" + im.display_name() + "' is corrupt and now read-only (" + when +
                       ": " + problem + "); its objects stay readable, run mpp-inspect check on it");
  }
}

void recover_heap(Segment::Impl& im) {
  SegmentHeader& h = im.header();
  h.heap_recoveries.fetch_add(1, std::memory_order_relaxed);
  // A grower killed between publishing `size` and storing its derived copy.
  h.heap_size.store(h.size.load() - h.heap_offset, std::memory_order_release);
  rebuild_heap(im, "heap check after a crash failed");
}

// Under the allocator's lock, when an operation met a header or link that is not sound
// (HeapCorrupt): the free lists, bitmap and counters are derived, so a sound chain repairs
// them all; a broken chain turns the segment read-only.
void repair_heap(Segment::Impl& im, const HeapCorrupt& found) {
  rebuild_heap(im, "the heap was found corrupt (" + found.what + ")");
}

// Growth step: the size doubles, by at least kMinGrowth and at most kMaxGrowth at a time
// (rounded to kGrowthAlign), up to the maximum. Doubling keeps the number of growths of a
// segment logarithmic (a 2 GiB fill grows ~13 times) and the cap keeps the memory a full
// segment can overshoot its data by to 1 GiB.
constexpr std::uint64_t kMinGrowth = 1 << 20, kMaxGrowth = std::uint64_t{1} << 30;
constexpr std::uint64_t kGrowthAlign = 64 << 10;

// With the allocator's lock held: grows the segment so that `need_end` bytes are usable, or
// throws SegmentFull (saying why) and changes nothing. The file is extended first; ONE
// release store of the header's size publishes the pages (see segment_format.hpp).
void grow(Segment::Impl& im, std::uint64_t need_end, std::size_t asked) {
  SegmentHeader& h = im.header();
  const std::uint64_t size = h.size.load(std::memory_order_relaxed);
  const std::uint64_t max = h.max_size;
  if (need_end > max || im.fd < 0) {
    throw SegmentFull("segment '" + im.display_name() + "' has no room for " +
                      std::to_string(asked) + " more bytes: it reached its maximum size of " +
                      std::to_string(max) + " bytes (" +
                      std::to_string(max - im.heap().top.load() + im.heap().free_listed_bytes.load()) +
                      " bytes free, in pieces too small); create it with a larger max_bytes");
  }
  std::uint64_t target = size + std::clamp(size, kMinGrowth, kMaxGrowth);
  target = std::min(max, align_up(std::max(target, need_end), kGrowthAlign));
  at_crash_point("grow:before-fallocate");
  int e;
  do {
    e = posix_fallocate(im.fd, static_cast<off_t>(size), static_cast<off_t>(target - size));
  } while (e == EINTR);
  if (e != 0) {
    const bool full = e == ENOSPC || e == ENOMEM;
    std::string why = full ? (im.name.empty() ? "the system has no memory left for it"
                                              : "/dev/shm is full")
                           : std::string(std::strerror(e));
    throw SegmentFull("segment '" + im.display_name() + "' cannot grow from " +
                      std::to_string(size) + " to " + std::to_string(target) + " bytes for " +
                      std::to_string(asked) + " more: " + why +
                      (full ? "; free memory or space in /dev/shm" : ""));
  }
  at_crash_point("grow:before-publish");
  h.size.store(target, std::memory_order_release);  // publishes the new pages
  at_crash_point("grow:before-heap-size");
  h.heap_size.store(target - h.heap_offset, std::memory_order_release);
  h.growths.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

bool Segment::check_heap() {
  if (read_only()) return false;
  auto& im = *impl_;
  std::string problem;
  try {
    RobustLockGuard guard(im.heap().mutex, [&] { recover_heap(im); });
    problem = walk_heap(im);
  } catch (const SegmentError&) {
    return false;
  }
  if (!problem.empty()) mark_read_only(header(), "heap check failed: " + problem);
  return problem.empty();
}

std::size_t Segment::free_bytes() const {
  // Lock-free reads of counters: a report, not a promise. Free blocks are merged with free
  // neighbours at once, so this is what can be allocated, less fragmentation between live
  // blocks.
  HeapHeader& heap = impl_->heap();
  return impl_->header().max_size - heap.top.load(std::memory_order_relaxed) +
         heap.free_listed_bytes.load(std::memory_order_relaxed);
}

void* Segment::allocate(std::size_t bytes, std::size_t align) {
  bool fresh = false;
  return allocate_block(bytes, align, fresh);
}

void* Segment::allocate_zeroed(std::size_t bytes, std::size_t align) {
  bool fresh = false;
  void* p = allocate_block(bytes, align, fresh);
  if (!fresh) std::memset(p, 0, bytes);
  return p;
}

void* Segment::allocate_block(std::size_t bytes, std::size_t align, bool& fresh) {
  auto& im = *impl_;
  auto refuse_read_only = [&] {
    throw SegmentError("segment '" + im.name + "' is read-only: " + header().read_only_reason);
  };
  if (read_only()) refuse_read_only();
  if (align < 16) align = 16;
  if ((align & (align - 1)) != 0) throw ValueError("allocation alignment must be a power of two");
  const std::uint64_t extra = align > 16 ? align : 0;  // room to slide up to the alignment
  if (bytes > im.reserved) {
    throw SegmentFull("cannot allocate " + std::to_string(bytes) + " bytes in segment '" +
                      im.display_name() + "', whose maximum size is " + std::to_string(im.reserved));
  }
  const std::uint64_t n = std::max<std::uint64_t>(align_up(bytes + extra + BLOCK_HEADER_BYTES, 16),
                                                   BLOCK_MIN_BYTES);
  std::uint64_t off = 0;
  {
    RobustLockGuard guard(im.heap().mutex, [&] { recover_heap(im); });
    if (read_only()) refuse_read_only();
    // Free space first (any size class: blocks are split), then never-used space, then a
    // growth. A corrupt list or header met on the way is repaired from the chain and the
    // allocation tried once more.
    for (int attempt = 0;; ++attempt) {
      try {
        Heap heap(im);
        off = heap.take_free(n);
        if (off == 0) off = heap.take_top(n, im.size(), fresh);
        if (off == 0) {
          grow(im, heap.top() + n, bytes);
          off = heap.take_top(n, im.size(), fresh);
        }
        break;
      } catch (const HeapCorrupt& e) {
        if (attempt > 0) {
          mark_read_only(header(), "the heap was found corrupt again after a repair: " + e.what);
          refuse_read_only();
        }
        repair_heap(im, e);
      }
    }
  }
  char* user = static_cast<char*>(im.base) + off + BLOCK_HEADER_BYTES;
  if (align > 16) {
    auto addr = reinterpret_cast<std::uintptr_t>(user);
    char* aligned = user + ((align - addr % align) % align);
    if (aligned == user) aligned += align;  // keep room for the redirect header below it
    auto* r = reinterpret_cast<BlockHeader*>(aligned - BLOCK_HEADER_BYTES);
    r->word.store(REDIRECT_TAG | static_cast<std::uint64_t>(aligned - user), std::memory_order_relaxed);
    return aligned;
  }
  return user;
}

void Segment::deallocate(void* p) noexcept {
  if (!p || read_only()) return;  // a heap found corrupt is not touched again: the block leaks
  auto& im = *impl_;
  // `p` may come from an offset read in a damaged object: it is located before any of the
  // bytes around it are read, and a block that is not a live one of this heap is refused.
  const std::uint64_t first = Heap::first_block_of(header());
  std::uint64_t off = offset_of(p);
  if (off < first + BLOCK_HEADER_BYTES || off >= im.size() || off % 16 != 0) return;
  off -= BLOCK_HEADER_BYTES;
  if (std::uint64_t w = im.block(off)->word.load(std::memory_order_relaxed); (w & TAG_MASK) == REDIRECT_TAG) {
    const std::uint64_t back = w & ~TAG_MASK;
    if (back % 16 != 0 || back > off - first) return;
    off -= back;
  }
  HeapHeader& heap = im.heap();
  try {
    RobustLockGuard guard(heap.mutex, [&] { recover_heap(im); });
    try {
      Heap h(im);
      const std::uint64_t w = h.live_word(off);
      if (w == 0) return;  // not a live block of this heap (a double free): refused
      h.release(off, w);
    } catch (const HeapCorrupt& e) {
      repair_heap(im, e);  // the block leaks
    }
  } catch (...) {
    // The heap is corrupt beyond repair: the segment is read-only, the block leaks.
  }
}

namespace {

std::string describe(ObjectKind kind, std::string_view key_type, std::string_view value_type) {
  std::string s(kind_name(kind));
  if (!key_type.empty() || !value_type.empty()) {
    s += '<';
    if (!key_type.empty()) {
      s += key_type;
      if (!value_type.empty()) s += ", ";
    }
    s += value_type;
    s += '>';
  }
  return s;
}

void validate_object_name(std::string_view name) {
  if (name.size() > MAX_OBJECT_NAME) {
    throw ValueError("object name '" + std::string(name.substr(0, 40)) + "...' is " +
                     std::to_string(name.size()) + " bytes; the limit is " +
                     std::to_string(MAX_OBJECT_NAME));
  }
  if (name.find('\0') != std::string_view::npos) {
    throw ValueError("an object name cannot contain a NUL byte");
  }
}

}  // namespace

// Matches a published entry against the spec; throws TypeMismatch when the name is taken
// by something else.
static void check_match(const Segment& seg, const DirectoryEntry& e, const Segment::ObjectSpec& spec) {
  if (e.kind == spec.kind &&
      e.type_hash == type_hash(spec.key_type, spec.value_type)) {
    return;
  }
  throw TypeMismatch("object '" + std::string(spec.name) + "' in segment '" +
                     (seg.name().empty() ? std::string("(anonymous)") : seg.name()) + "' is a " +
                     describe(e.kind, e.key_type, e.value_type) + ", not the " +
                     describe(spec.kind, spec.key_type, spec.value_type) + " asked for");
}

namespace {

std::uint32_t name_hash(std::string_view name) {
  return static_cast<std::uint32_t>(fnv1a64(name));
}

// A directory chunk in the heap, or nullptr if `off` does not hold one that fits the segment
// (only a foreign write can make such a link). A chain of chunks is never longer than
// max_chunks() (more links is a cycle).
DirectoryChunk* chunk_at(const Segment::Impl& im, std::uint64_t off) {
  const std::uint64_t size = im.size();
  if (off < im.header().heap_offset || off % 16 != 0 || off > size || size - off < sizeof(DirectoryChunk)) {
    return nullptr;
  }
  auto* chunk = reinterpret_cast<DirectoryChunk*>(static_cast<char*>(im.base) + off);
  if (chunk->capacity == 0 ||
      directory_chunk_entries(chunk->capacity) + std::uint64_t{chunk->capacity} * sizeof(DirectoryEntry) >
          size - off) {
    return nullptr;
  }
  return chunk;
}

// Whether [off, off + bytes) is the user memory of an allocated block (objects are never
// freed, so its header is stable and read without the allocator's lock). `off` is in the
// heap and 16-aligned.
bool heap_block_holds(const Segment::Impl& im, std::uint64_t off, std::uint64_t bytes) {
  const std::uint64_t first = im.heap().first_block;
  if (off < first + BLOCK_HEADER_BYTES) return false;
  std::uint64_t block = off - BLOCK_HEADER_BYTES;
  std::uint64_t w = im.block(block)->word.load(std::memory_order_relaxed);
  if ((w & TAG_MASK) == REDIRECT_TAG) {  // an over-aligned block: its real header is below
    const std::uint64_t back = w & ~TAG_MASK;
    if (back % 16 != 0 || back > block - first) return false;
    block -= back;
    w = im.block(block)->word.load(std::memory_order_relaxed);
  }
  const std::uint64_t size = w & SIZE_MASK;
  return (w & TAG_MASK) == BLOCK_TAG && (w & STATE_MASK) == static_cast<std::uint64_t>(BlockState::allocated) &&
         size >= off - block && size - (off - block) >= bytes && block + size <= im.size();
}

std::uint64_t max_chunks(const Segment::Impl& im) {
  return im.size() / (sizeof(DirectoryChunk) + sizeof(DirectoryEntry)) + 1;
}

std::uint32_t* chunk_hashes(DirectoryChunk* c) { return reinterpret_cast<std::uint32_t*>(c + 1); }
DirectoryEntry* chunk_entries(DirectoryChunk* c) {
  return reinterpret_cast<DirectoryEntry*>(reinterpret_cast<char*>(c) + directory_chunk_entries(c->capacity));
}

// Calls `f(entry, hash_slot)` on every directory entry, the inline ones (hash_slot null)
// and then each chunk's, until it returns true; returns that entry, or nullptr. Chunks are
// only ever appended (one release store links each), so this needs no lock. With `hash`,
// only the chunk entries whose hash copy matches are visited (inline ones all are).
template <class F>
DirectoryEntry* scan_directory(const Segment::Impl& im, F&& f, const std::uint32_t* hash = nullptr) {
  const SegmentHeader& h = im.header();
  DirectoryEntry* dir = im.directory();
  for (unsigned i = 0; i < h.directory_capacity; ++i) {
    if (f(dir[i], static_cast<std::uint32_t*>(nullptr))) return &dir[i];
  }
  const std::atomic<std::uint64_t>* link = &h.directory_next;
  std::uint64_t chunks = max_chunks(im);
  for (std::uint64_t off; (off = link->load(std::memory_order_acquire)) != 0;) {
    DirectoryChunk* chunk = chunk_at(im, off);
    if (!chunk || chunks-- == 0) break;
    std::uint32_t* hashes = chunk_hashes(chunk);
    DirectoryEntry* entries = chunk_entries(chunk);
    for (unsigned i = 0; i < chunk->capacity; ++i) {
      if (hash && std::atomic_ref<std::uint32_t>(hashes[i]).load(std::memory_order_relaxed) != *hash) continue;
      if (f(entries[i], &hashes[i])) return &entries[i];
    }
    link = &chunk->next;
  }
  return nullptr;
}

}  // namespace

void* Segment::find(const ObjectSpec& spec) {
  validate_object_name(spec.name);
  if (spec.name.empty()) return nullptr;
  const std::uint32_t hash = name_hash(spec.name);
  DirectoryEntry* e = scan_directory(
      *impl_,
      [&](const DirectoryEntry& d, std::uint32_t*) {
        return d.state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(EntryState::published) &&
               d.name_hash == hash && spec.name == std::string_view(d.name);
      },
      &hash);
  if (!e) return nullptr;
  check_match(*this, *e, spec);
  // The entry's offset is followed only if its state lies in the heap: an object of a fixed
  // size (every kind but the queues and arrays, whose state follows their capacity) has at
  // least the bytes this build's state needs.
  const bool sized = spec.kind != ObjectKind::queue && spec.kind != ObjectKind::joinable_queue &&
                     spec.kind != ObjectKind::simple_queue && spec.kind != ObjectKind::array;
  const std::uint64_t need = sized ? spec.bytes : sizeof(ObjectHeader);
  if (e->object_bytes < need ||
      !in_heap(*this, e->object_offset, e->object_bytes, std::max<std::uint64_t>(spec.align, 16)) ||
      !heap_block_holds(*impl_, e->object_offset, e->object_bytes)) {
    throw SegmentError("the " + std::string(kind_name(spec.kind)) + " '" + std::string(spec.name) +
                       "' in segment '" + impl_->display_name() +
                       "' is corrupt: its directory entry points outside the heap; its segment was "
                       "damaged (run mpp-inspect check on it) and this object cannot be used");
  }
  return at(e->object_offset);
}

// With the directory lock held: a free entry (and where its hash copy goes, null for an
// inline one). Chunk entries are taken in order; when every chunk is full a new one is
// added, as large as the directory so far (so lookups stay few chunks long). A creator
// killed between allocating a chunk and linking it leaks that chunk, nothing else; one
// killed after taking an entry leaks that entry (the recovery frees only `building` ones
// that it can find, which it does: it scans every entry).
DirectoryEntry* Segment::free_entry(std::uint32_t*& hash_slot) {
  auto& h = header();
  hash_slot = nullptr;
  DirectoryEntry* dir = impl_->directory();
  for (unsigned i = 0; i < h.directory_capacity; ++i) {
    if (dir[i].state.load() == static_cast<std::uint32_t>(EntryState::free)) return &dir[i];
  }
  std::uint64_t capacity = h.directory_capacity;
  std::atomic<std::uint64_t>* last = &h.directory_next;
  std::uint64_t chunks = max_chunks(*impl_);
  for (std::uint64_t off; (off = last->load(std::memory_order_acquire)) != 0;) {
    DirectoryChunk* chunk = chunk_at(*impl_, off);
    if (!chunk || chunks-- == 0) {
      throw SegmentError("segment '" + impl_->display_name() + "': its directory is corrupt (a chunk link "
                         "is not a chunk, or the chunks form a cycle); run mpp-inspect check on it");
    }
    if (std::uint32_t k = chunk->filled.load(); k < chunk->capacity) {
      chunk->filled.store(k + 1);
      hash_slot = &chunk_hashes(chunk)[k];
      return &chunk_entries(chunk)[k];
    }
    capacity += chunk->capacity;
    last = &chunk->next;
  }
  const auto n = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(capacity, 64, 1 << 16));
  void* mem = allocate_zeroed(directory_chunk_entries(n) + std::uint64_t{n} * sizeof(DirectoryEntry));
  auto* chunk = new (mem) DirectoryChunk();
  chunk->capacity = n;
  for (std::uint32_t i = 0; i < n; ++i) new (&chunk_entries(chunk)[i]) DirectoryEntry();
  chunk->filled.store(1);
  last->store(offset_of(chunk), std::memory_order_release);
  hash_slot = &chunk_hashes(chunk)[0];
  return &chunk_entries(chunk)[0];
}

std::pair<void*, bool> Segment::find_or_create(const ObjectSpec& spec,
                                               const std::function<void(void*)>& construct) {
  if (void* p = find(spec)) return {p, false};  // published entries never change: no lock
  auto& h = header();
  // A creator that died while building an entry left it `building`, possibly with its
  // object's memory allocated (and half-constructed, so not reusable): the entry is freed
  // and the memory counted as leaked.
  RobustLockGuard guard(h.directory_mutex, [&] {
    scan_directory(*impl_, [&](DirectoryEntry& d, std::uint32_t*) {
      if (d.state.load() == static_cast<std::uint32_t>(EntryState::building)) {
        h.leaked.fetch_add(d.object_bytes, std::memory_order_relaxed);
        d.state.store(static_cast<std::uint32_t>(EntryState::free));
      }
      return false;
    });
  });
  std::string generated;
  std::string_view name = spec.name;
  if (name.empty()) {
    generated = std::string(kind_name(spec.kind)) + "#" + std::to_string(h.objects_created.load() + 1);
    name = generated;
  } else if (void* p = find(spec)) {
    return {p, false};  // created by another process while we waited for the lock
  }
  std::uint32_t* hash_slot = nullptr;
  DirectoryEntry* slot = free_entry(hash_slot);
  slot->kind = spec.kind;
  slot->object_offset = 0;
  slot->object_bytes = 0;
  slot->type_hash = type_hash(spec.key_type, spec.value_type);
  slot->creator_pid = getpid();
  slot->creation_time_ns = now_ns();
  copy_cut(slot->name, sizeof slot->name, name);
  slot->name_hash = name_hash(slot->name);
  if (hash_slot) {  // published with the entry's state, below
    std::atomic_ref<std::uint32_t>(*hash_slot).store(slot->name_hash, std::memory_order_relaxed);
  }
  copy_cut(slot->key_type, sizeof slot->key_type, spec.key_type);
  copy_cut(slot->value_type, sizeof slot->value_type, spec.value_type);
  slot->object_bytes = spec.bytes;  // counted as leaked if we die from here on
  slot->state.store(static_cast<std::uint32_t>(EntryState::building));
  void* mem = nullptr;
  try {
    mem = spec.zeroed ? allocate_zeroed(spec.bytes, spec.align) : allocate(spec.bytes, spec.align);
    construct(mem);
  } catch (...) {
    if (mem) deallocate(mem);
    slot->state.store(static_cast<std::uint32_t>(EntryState::free));
    throw;
  }
  slot->object_offset = offset_of(mem);
  h.objects_created.fetch_add(1, std::memory_order_relaxed);
  slot->state.store(static_cast<std::uint32_t>(EntryState::published), std::memory_order_release);
  return {mem, true};
}

}  // namespace mpp::detail
