#include "mpp/detail/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>

#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/segment_check.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {
namespace {

// Why the allocator is mpp's own and not Boost.Interprocess's rbtree_best_fit (the first
// version used it, behind a robust mutex family of mpp's own): rbtree_best_fit rebalances
// an intrusive red-black tree and splits/merges blocks in many stores, so a process
// SIGKILLed inside allocate() leaves a tree that the next allocate() follows into a
// segfault (segment_test reproduced it within a few hundred kills), and its
// check_sanity() does not notice. Segregated free lists change by one published store, so a
// kill anywhere leaks at most one block and corrupts nothing; the check after a recovery
// walks every list and can actually vouch for the heap.

constexpr std::uint32_t class_for(std::uint64_t total) {
  if (total <= 128) return static_cast<std::uint32_t>(total / 16 - 1);
  unsigned p = 63 - static_cast<unsigned>(__builtin_clzll(total - 1));
  std::uint64_t step = 1ULL << (p - 2);
  auto k = static_cast<std::uint32_t>((total - (1ULL << p) + step - 1) / step - 1);
  return 8 + (p - 7) * 4 + k;
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
      shm_unlink(shm_path(name).c_str());
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
  int fd = shm_open(shm_path(name).c_str(), O_RDWR | O_CREAT | O_EXCL, options.mode & 0777);
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

// Walks every free list with the allocator's lock held: each entry must be a free block of
// its class inside the used part of the heap, and no list may be longer than the heap could
// hold (a cycle). Recomputes the derived counter. Returns what is wrong, or empty.
std::string walk_heap(const Segment::Impl& im) {
  std::uint64_t listed = 0;
  std::string problem = heap_problem(im.base, im.size(), &listed);
  if (problem.empty()) im.heap().free_listed_bytes.store(listed, std::memory_order_relaxed);
  return problem;
}

// Under the allocator's lock, after its holder died: count it and check the heap. A kill
// cannot break a list (each change is one store), so a failure here means something else
// wrote over the heap; the segment then refuses to allocate rather than spread the damage.
void recover_heap(Segment::Impl& im) {
  SegmentHeader& h = im.header();
  h.heap_recoveries.fetch_add(1, std::memory_order_relaxed);
  // A grower killed between publishing `size` and storing its derived copy.
  h.heap_size.store(h.size.load() - h.heap_offset, std::memory_order_release);
  std::string problem = walk_heap(im);
  if (!problem.empty()) {
    mark_read_only(h, "heap check after a crash failed: " + problem);
    throw SegmentError("segment '" + im.name + "' is corrupt and now read-only: " + problem);
  }
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
  // Lock-free reads of counters: a report, not a promise (free-listed blocks serve only
  // requests of their size class or smaller).
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
  const std::uint64_t total = align_up(bytes + extra + BLOCK_HEADER_BYTES, 16);
  const std::uint32_t c = class_for(std::max<std::uint64_t>(total, 32));
  const std::uint64_t cbytes = heap_class_bytes(c);
  HeapHeader& heap = im.heap();
  std::uint64_t off = 0;
  {
    RobustLockGuard guard(heap.mutex, [&] { recover_heap(im); });
    if (read_only()) refuse_read_only();
    // 1. a free block of the class; 2. fresh space; 3. a free block of a larger class
    // (it keeps its class, so it goes back to its own list when freed).
    auto pop = [&](std::uint32_t k) {
      std::uint64_t b = heap.free_head[k].load(std::memory_order_relaxed);
      if (b == 0) return false;
      heap.free_head[k].store(im.block(b)->next.load(std::memory_order_relaxed),
                              std::memory_order_relaxed);  // publishes: b is off the list
      im.block(b)->state.store(static_cast<std::uint32_t>(BlockState::allocated));
      heap.free_listed_bytes.fetch_sub(heap_class_bytes(k), std::memory_order_relaxed);
      off = b;
      return true;
    };
    auto carve = [&] {
      std::uint64_t top = heap.top.load(std::memory_order_relaxed);
      if (im.size() - top < cbytes) return false;
      heap.top.store(top + cbytes, std::memory_order_relaxed);  // publishes the block
      BlockHeader* b = im.block(top);
      b->tag = BLOCK_MAGIC | c;
      b->state.store(static_cast<std::uint32_t>(BlockState::allocated));
      b->next.store(0, std::memory_order_relaxed);
      off = top;
      fresh = true;
      return true;
    };
    if (!pop(c) && !carve()) {
      for (std::uint32_t k = c + 1; k < HEAP_CLASSES && off == 0; ++k) pop(k);
      if (off == 0) {
        grow(im, heap.top.load(std::memory_order_relaxed) + cbytes, bytes);
        carve();
      }
    }
    if (off != 0) heap.allocations.fetch_add(1, std::memory_order_relaxed);
  }
  char* user = static_cast<char*>(im.base) + off + BLOCK_HEADER_BYTES;
  if (align > 16) {
    auto addr = reinterpret_cast<std::uintptr_t>(user);
    char* aligned = user + ((align - addr % align) % align);
    if (aligned == user) aligned += align;  // keep room for the redirect header below it
    auto* r = reinterpret_cast<BlockHeader*>(aligned - BLOCK_HEADER_BYTES);
    r->tag = REDIRECT_MAGIC;
    r->next.store(static_cast<std::uint64_t>(aligned - user), std::memory_order_relaxed);
    return aligned;
  }
  return user;
}

void Segment::deallocate(void* p) noexcept {
  if (!p || read_only()) return;  // a heap found corrupt is not touched again: the block leaks
  auto& im = *impl_;
  char* user = static_cast<char*>(p);
  auto* h = reinterpret_cast<BlockHeader*>(user - BLOCK_HEADER_BYTES);
  if (h->tag == REDIRECT_MAGIC) {
    user -= h->next.load(std::memory_order_relaxed);
    h = reinterpret_cast<BlockHeader*>(user - BLOCK_HEADER_BYTES);
  }
  const std::uint64_t off = offset_of(h);
  HeapHeader& heap = im.heap();
  if ((h->tag & 0xffff0000u) != BLOCK_MAGIC || off < heap.first_block || off >= impl_->size() ||
      h->state.load() != static_cast<std::uint32_t>(BlockState::allocated)) {
    return;  // not a live block of this heap (a double free): refusing is the safe choice
  }
  const std::uint32_t c = h->tag & 0xffffu;
  if (c == 0 || c >= HEAP_CLASSES) return;
  try {
    RobustLockGuard guard(heap.mutex, [&] { recover_heap(im); });
    h->state.store(static_cast<std::uint32_t>(BlockState::free));
    h->next.store(heap.free_head[c].load(std::memory_order_relaxed), std::memory_order_relaxed);
    heap.free_head[c].store(off, std::memory_order_relaxed);  // publishes: b is on the list
    heap.free_listed_bytes.fetch_add(heap_class_bytes(c), std::memory_order_relaxed);
    heap.allocations.fetch_sub(1, std::memory_order_relaxed);
  } catch (...) {
    // The heap check after a recovery failed: the segment is read-only, the block leaks.
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

// Calls `f` on every directory entry, the inline ones and then each chunk's, until it
// returns true; returns that entry, or nullptr. Chunks are only ever appended (one release
// store links each), so this needs no lock; a link that does not fit the segment (only a
// foreign write can make one) ends the walk.
template <class F>
DirectoryEntry* scan_directory(const Segment::Impl& im, F&& f) {
  const SegmentHeader& h = im.header();
  DirectoryEntry* dir = im.directory();
  for (unsigned i = 0; i < h.directory_capacity; ++i) {
    if (f(dir[i])) return &dir[i];
  }
  const std::atomic<std::uint64_t>* link = &h.directory_next;
  for (std::uint64_t off; (off = link->load(std::memory_order_acquire)) != 0;) {
    if (off < h.heap_offset || off % 16 != 0 || off + sizeof(DirectoryChunk) > im.size()) break;
    auto* chunk = reinterpret_cast<DirectoryChunk*>(static_cast<char*>(im.base) + off);
    if (off + sizeof(DirectoryChunk) + std::uint64_t{chunk->capacity} * sizeof(DirectoryEntry) > im.size()) break;
    auto* entries = reinterpret_cast<DirectoryEntry*>(chunk + 1);
    for (unsigned i = 0; i < chunk->capacity; ++i) {
      if (f(entries[i])) return &entries[i];
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
  DirectoryEntry* e = scan_directory(*impl_, [&](const DirectoryEntry& d) {
    return d.state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(EntryState::published) &&
           d.name_hash == hash && spec.name == std::string_view(d.name);
  });
  if (!e) return nullptr;
  check_match(*this, *e, spec);
  return at(e->object_offset);
}

// With the directory lock held: a free entry, adding a chunk (as large as the directory
// so far, so lookups stay few chunks long) when every entry is used. A creator killed
// between allocating a chunk and linking it leaks that chunk, nothing else.
DirectoryEntry* Segment::free_entry() {
  auto& h = header();
  std::uint64_t capacity = 0;
  const std::atomic<std::uint64_t>* last = &h.directory_next;
  DirectoryEntry* slot = scan_directory(*impl_, [&](DirectoryEntry& d) {
    ++capacity;
    return d.state.load() == static_cast<std::uint32_t>(EntryState::free);
  });
  if (slot) return slot;
  for (std::uint64_t off; (off = last->load(std::memory_order_acquire)) != 0;) {
    last = &at<DirectoryChunk>(off)->next;
  }
  const auto n = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(capacity, 64, 1 << 16));
  void* mem = allocate_zeroed(sizeof(DirectoryChunk) + n * sizeof(DirectoryEntry));
  auto* chunk = new (mem) DirectoryChunk();
  chunk->capacity = n;
  auto* entries = reinterpret_cast<DirectoryEntry*>(chunk + 1);
  for (std::uint32_t i = 0; i < n; ++i) new (&entries[i]) DirectoryEntry();
  const_cast<std::atomic<std::uint64_t>*>(last)->store(offset_of(chunk), std::memory_order_release);
  return &entries[0];
}

std::pair<void*, bool> Segment::find_or_create(const ObjectSpec& spec,
                                               const std::function<void(void*)>& construct) {
  if (void* p = find(spec)) return {p, false};  // published entries never change: no lock
  auto& h = header();
  // A creator that died while building an entry left it `building`, possibly with its
  // object's memory allocated (and half-constructed, so not reusable): the entry is freed
  // and the memory counted as leaked.
  RobustLockGuard guard(h.directory_mutex, [&] {
    scan_directory(*impl_, [&](DirectoryEntry& d) {
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
  DirectoryEntry* slot = free_entry();
  slot->kind = spec.kind;
  slot->object_offset = 0;
  slot->object_bytes = 0;
  slot->type_hash = type_hash(spec.key_type, spec.value_type);
  slot->creator_pid = getpid();
  slot->creation_time_ns = now_ns();
  copy_cut(slot->name, sizeof slot->name, name);
  slot->name_hash = name_hash(slot->name);
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
