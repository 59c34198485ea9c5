#include "segment_reader.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mpp/detail/dict_core.hpp"
#include "mpp/detail/os/fd.hpp"
#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/queue_core.hpp"
#include "mpp/detail/segment_check.hpp"
#include "mpp/detail/segment_format.hpp"
#include "procfs.hpp"

namespace mpp::inspect {
namespace {

using namespace mpp::detail;

thread_local sigjmp_buf* g_sigbus_jump = nullptr;

void on_sigbus(int) {
  if (g_sigbus_jump) siglongjmp(*g_sigbus_jump, 1);
  signal(SIGBUS, SIG_DFL);
  raise(SIGBUS);
}

LockInfo lock_info(const RobustMutex& m) {
  LockInfo l;
  l.holder = m.holder();
  // Alive, and the same process that took the lock (its start time matches), not a later
  // one that reuses a dead holder's pid.
  l.holder_alive = l.holder != 0 && pid_alive(l.holder) && identity_alive(m.holder_identity());
  l.recoveries = m.recoveries();
  return l;
}

std::string cstr(const char* s, std::size_t cap) { return std::string(s, strnlen(s, cap)); }

}  // namespace

void guard_sigbus(const std::function<void()>& read) {
  sigjmp_buf jump;
  struct sigaction sa {}, old {};
  sa.sa_handler = on_sigbus;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &old);
  sigjmp_buf* outer = g_sigbus_jump;
  if (sigsetjmp(jump, 1) != 0) {
    g_sigbus_jump = outer;
    sigaction(SIGBUS, &old, nullptr);
    throw InspectError(4, "the file shrank while it was being read (SIGBUS); try again");
  }
  g_sigbus_jump = &jump;
  try {
    read();
  } catch (...) {
    g_sigbus_jump = outer;
    sigaction(SIGBUS, &old, nullptr);
    throw;
  }
  g_sigbus_jump = outer;
  sigaction(SIGBUS, &old, nullptr);
}

MappedSegment::MappedSegment(const std::string& name_or_path) {
  if (name_or_path.rfind("memfd:", 0) == 0) {
    // An anonymous segment: opened through a process that holds or maps it.
    name_ = name_or_path;
    for (const auto& seg : memfd_segments()) {
      if (seg.name != name_or_path) continue;
      mapped_by_ = seg.mapped_by;
      std::string why = "no process holds its descriptor and its mappings cannot be opened "
                        "without CAP_SYS_ADMIN";
      for (const auto& path : seg.paths) {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
          map(fd, path);
          return;
        }
        if (path.find("/fd/") != std::string::npos) why = path + ": " + std::strerror(errno);
      }
      throw InspectError(4, "cannot open anonymous segment " + name_or_path + ": " + why);
    }
    throw InspectError(3, "no such anonymous segment: " + name_or_path +
                              " (no live process maps it; see mpp-inspect list)");
  }
  bool is_path = name_or_path.find('/') != std::string::npos;
  std::string path = is_path ? name_or_path : "/dev/shm/" + name_or_path;
  name_ = is_path ? path.substr(path.rfind('/') + 1) : name_or_path;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT) throw InspectError(3, "no such segment: " + path);
    throw InspectError(4, "cannot open " + path + ": " + std::strerror(e));
  }
  map(fd, path);
}

void MappedSegment::map(int raw_fd, const std::string& path) {
  const mpp::detail::os::Fd fd(raw_fd);  // closed on every way out
  struct stat st {};
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    throw InspectError(4, path + " is not a regular file, so not an mpp segment");
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ < sizeof(SegmentHeader)) {
    throw InspectError(4, path + " is not an mpp segment: " +
                              (size_ == 0 ? std::string("it is empty")
                                          : "it is too small (" + std::to_string(size_) + " bytes)"));
  }
  base_ = mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd.get(), 0);
  int e = errno;
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throw InspectError(4, "cannot map " + path + ": " + std::strerror(e));
  }
}

MappedSegment::~MappedSegment() {
  if (base_) munmap(base_, size_);
}

SegmentInfo read_image(const void* base, std::size_t size, const std::string& name, bool deep) {
  if (size < sizeof(SegmentHeader)) throw InspectError(4, name + " is too small to be a segment");
  const auto& h = *static_cast<const SegmentHeader*>(base);
  if (std::string p = header_problem(h, size); !p.empty()) {
    throw InspectError(4, name + " is not a usable mpp segment: " + p);
  }
  SegmentInfo s;
  s.name = name;
  s.size = h.size.load();
  s.max_size = h.max_size;
  s.growths = h.growths.load();
  s.heap_size = h.heap_size.load();
  s.creator_pid = h.creator_pid;
  s.created = static_cast<double>(h.creation_time_ns) / 1e9;
  s.creator_alive = same_process_alive(h.creator_pid, s.created);
  s.persist = h.persist.load() != 0;
  s.read_only = h.read_only.load() != 0;
  s.read_only_reason = cstr(h.read_only_reason, sizeof h.read_only_reason);
  s.heap_recoveries = h.heap_recoveries.load();
  s.leaked = h.leaked.load();
  s.directory_lock = lock_info(h.directory_mutex);
  s.directory_capacity = h.directory_capacity;

  const auto* bytes = static_cast<const char*>(base);
  const auto& heap = *reinterpret_cast<const HeapHeader*>(bytes + h.heap_offset);
  s.heap_lock = lock_info(heap.mutex);
  std::uint64_t listed = heap.free_listed_bytes.load();
  if (deep) {
    // The heap may be changing under us (we take no lock): a finding must persist over a
    // few looks before it is reported.
    std::string problem;
    for (int attempt = 0; attempt < 3; ++attempt) {
      problem = heap_problem(base, size, &listed);
      if (problem.empty()) break;
    }
    if (!problem.empty()) s.findings.push_back("heap: " + problem);
  }
  const std::uint64_t top = heap.top.load();
  if (top >= heap.first_block && top <= s.size) {
    std::uint64_t carved = top - heap.first_block;
    s.used = carved > listed ? carved - listed : 0;
    s.free = (s.size - top) + std::min(listed, carved);
  } else {
    s.findings.push_back("heap: its top or end lies outside the heap");
  }
  if (s.read_only) s.findings.push_back("segment is read-only: " + s.read_only_reason);

  auto visit = [&](const DirectoryEntry& e, std::uint64_t i) {
    auto state = e.state.load(std::memory_order_acquire);
    if (state == static_cast<std::uint32_t>(EntryState::free)) return;
    if (state == static_cast<std::uint32_t>(EntryState::building)) {
      if (!h.directory_mutex.holder()) {
        s.findings.push_back("directory entry " + std::to_string(i) +
                             " was left half-built by a dead creator (recovered on next use)");
      }
      return;
    }
    ObjectInfo o;
    if (state != static_cast<std::uint32_t>(EntryState::published)) {
      o.problem = "directory entry " + std::to_string(i) + " has an invalid state " + std::to_string(state);
    } else {
      o.problem = entry_problem(base, size, e);
    }
    if (!o.problem.empty()) {
      s.findings.push_back(o.problem);
      o.name = "#" + std::to_string(i);
      s.objects.push_back(std::move(o));
      return;
    }
    o.name = cstr(e.name, sizeof e.name);
    o.kind = std::string(kind_name(e.kind));
    o.key_type = cstr(e.key_type, sizeof e.key_type);
    o.value_type = cstr(e.value_type, sizeof e.value_type);
    o.offset = e.object_offset;
    o.state_bytes = e.object_bytes;
    o.creator_pid = e.creator_pid;
    o.created = static_cast<double>(e.creation_time_ns) / 1e9;
    const auto& oh = *reinterpret_cast<const ObjectHeader*>(bytes + e.object_offset);
    o.count = oh.count.load();
    if ((e.kind == ObjectKind::queue || e.kind == ObjectKind::joinable_queue ||
         e.kind == ObjectKind::simple_queue) &&
        e.object_bytes >= sizeof(QueueState) && e.object_offset % alignof(QueueState) == 0) {
      // A queue's header count is a hint refreshed every 64th put: its exact depth is the
      // distance between its positions (as qsize() computes it; head may be one past tail
      // while a dead producer's skipped claim waits for the next put).
      const auto& q = *reinterpret_cast<const QueueState*>(bytes + e.object_offset);
      const std::uint64_t head = q.head.load(), tail = q.tail.load();
      o.count = tail > head ? tail - head : 0;
    }
    o.bytes = oh.bytes.load();
    o.leaked = oh.leaked.load();
    o.lock = lock_info(oh.mutex);
    if (e.kind == ObjectKind::dict && e.object_bytes >= sizeof(DictState) &&
        e.object_offset % alignof(DictState) == 0) {
      // A dict's writers lock one of its stripes (the header's mutex is its list lock): the
      // lock shown is the first one held, a dead holder first, and the recoveries of all.
      const auto& d = *reinterpret_cast<const DictState*>(bytes + e.object_offset);
      for (const DictStripe& st : d.stripes) {
        const LockInfo l = lock_info(st.mutex);
        o.lock.recoveries += l.recoveries;
        const bool better = o.lock.holder == 0 || (o.lock.holder_alive && l.holder != 0 && !l.holder_alive);
        if (l.holder != 0 && better) {
          o.lock.holder = l.holder;
          o.lock.holder_alive = l.holder_alive;
        }
      }
    }
    // A queue takes no lock (its header.mutex stays free): each claimed slot names its
    // process, and the next put or get that meets a dead one's claim repairs it.
    if (o.lock.holder != 0 && !o.lock.holder_alive) {
      s.findings.push_back("object '" + o.name + "': its lock is held by dead pid " +
                           std::to_string(o.lock.holder) + " (the next locker recovers it)");
    }
    s.objects.push_back(std::move(o));
  };
  const auto* dir = reinterpret_cast<const DirectoryEntry*>(bytes + h.directory_offset);
  std::uint64_t index = 0;
  for (std::uint32_t i = 0; i < h.directory_capacity; ++i) visit(dir[i], index++);
  // The chunks in the heap, each bounds-checked before it is read; a cycle is cut off by the
  // number of chunks the heap could hold.
  const std::uint64_t limit = std::min<std::uint64_t>(h.size.load(), size);
  std::uint64_t link = h.directory_next.load(std::memory_order_acquire);
  for (std::uint64_t chunks = 0; link != 0; ++chunks) {
    if (link < h.heap_offset || link % 16 != 0 || link > limit - sizeof(DirectoryChunk) ||
        chunks > limit / sizeof(DirectoryChunk)) {
      s.findings.push_back("directory: a chunk link points outside the heap");
      break;
    }
    const auto& chunk = *reinterpret_cast<const DirectoryChunk*>(bytes + link);
    if (directory_chunk_entries(chunk.capacity) + std::uint64_t{chunk.capacity} * sizeof(DirectoryEntry) >
        limit - link) {
      s.findings.push_back("directory: a chunk runs past the segment's end");
      break;
    }
    const auto* entries =
        reinterpret_cast<const DirectoryEntry*>(bytes + link + directory_chunk_entries(chunk.capacity));
    for (std::uint32_t i = 0; i < chunk.capacity; ++i) visit(entries[i], index++);
    s.directory_capacity += chunk.capacity;
    link = chunk.next.load(std::memory_order_acquire);
  }
  if (s.heap_lock.holder != 0 && !s.heap_lock.holder_alive) {
    s.findings.push_back("the allocator's lock is held by dead pid " +
                         std::to_string(s.heap_lock.holder) + " (the next allocation recovers it)");
  }
  return s;
}

SegmentInfo read_segment(const MappedSegment& m, bool deep) {
  SegmentInfo s;
  guard_sigbus([&] { s = read_image(m.base(), m.size(), m.name(), deep); });
  if (m.anonymous()) {
    s.mapped_by = m.mapped_by();
  } else {
    auto mappers = shm_mappers();
    if (auto it = mappers.find(m.name()); it != mappers.end()) s.mapped_by = it->second;
  }
  // This process maps it too, read-only, while it looks; it is not a user of the segment.
  std::erase(s.mapped_by, getpid());
  return s;
}

std::vector<std::string> shm_files() {
  std::vector<std::string> out;
  DIR* d = opendir("/dev/shm");
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mpp::inspect
