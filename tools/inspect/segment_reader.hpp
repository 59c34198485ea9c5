// A typed snapshot of one segment, read from a read-only mapping without taking any lock.
// Every offset is bounds-checked (detail/segment_check.hpp) before it is followed, and a
// file that shrinks while it is read is caught (SIGBUS) and reported, so a foreign,
// truncated or corrupt file in /dev/shm yields an InspectError, never a crash or a hang.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpp::inspect {

// What mpp-inspect reports for a file it cannot read as a segment. `code` is the exit
// status the command ends with (see main.cpp: 3 missing, 4 not a usable segment).
class InspectError : public std::runtime_error {
 public:
  InspectError(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

struct LockInfo {
  pid_t holder = 0;           // 0: free
  bool holder_alive = false;  // from /proc; a dead holder's lock is recovered by the next locker
  std::uint64_t recoveries = 0;
};

struct ObjectInfo {
  std::string name;
  std::string kind;
  std::string key_type;
  std::string value_type;
  std::uint64_t offset = 0;      // of the object's state, from the segment's start
  std::uint64_t state_bytes = 0;
  std::uint64_t count = 0;       // elements / queue depth
  std::uint64_t bytes = 0;       // heap bytes the object holds
  std::uint64_t leaked = 0;      // bytes given up by crash recoveries
  pid_t creator_pid = 0;
  double created = 0;            // seconds since the epoch
  LockInfo lock;                  // the object's lock (a queue's put lock)
  std::optional<LockInfo> get_lock;  // queues: the consumers' lock
  std::string problem;           // non-empty: the entry is corrupt (and the rest is unset)
};

struct SegmentInfo {
  std::string name;
  std::uint64_t size = 0;        // bytes usable now
  std::uint64_t max_size = 0;    // the most it can grow to
  std::uint64_t growths = 0;     // times it grew
  std::uint64_t heap_size = 0;
  std::uint64_t used = 0;        // heap bytes in blocks not on a free list
  std::uint64_t free = 0;        // never-used space (up to `size`) plus free-listed blocks
  pid_t creator_pid = 0;
  bool creator_alive = false;
  double created = 0;            // seconds since the epoch
  bool persist = false;
  bool read_only = false;
  std::string read_only_reason;
  std::uint64_t heap_recoveries = 0;
  std::uint64_t leaked = 0;
  LockInfo heap_lock;
  LockInfo directory_lock;
  std::uint32_t directory_capacity = 0;
  std::vector<ObjectInfo> objects;
  std::vector<pid_t> mapped_by;  // live processes that map it (from /proc/*/maps)
  std::vector<std::string> findings;  // structural problems (check)
};

// A read-only mapping of /dev/shm/<name>, of an anonymous segment "memfd:<inode>" (see
// memfd_segments in procfs.hpp), or of any file path containing '/'.
class MappedSegment {
 public:
  // Throws InspectError(3) when it does not exist, InspectError(4) when it cannot be read
  // as an mpp segment of this format version (with the reason).
  explicit MappedSegment(const std::string& name_or_path);
  ~MappedSegment();
  MappedSegment(const MappedSegment&) = delete;
  MappedSegment& operator=(const MappedSegment&) = delete;

  const std::string& name() const { return name_; }
  const void* base() const { return base_; }
  std::size_t size() const { return size_; }
  bool anonymous() const { return name_.rfind("memfd:", 0) == 0; }
  const std::vector<pid_t>& mapped_by() const { return mapped_by_; }  // anonymous only

 private:
  void map(int fd, const std::string& path);  // takes the descriptor
  std::string name_;
  std::vector<pid_t> mapped_by_;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

// The snapshot of a mapped segment. With `deep`, also walks the heap (check).
SegmentInfo read_segment(const MappedSegment& m, bool deep);

// The same checks over an in-memory image (the fuzz test feeds mutated images here).
// Throws InspectError(4) for an image that is not a sound segment header.
SegmentInfo read_image(const void* base, std::size_t size, const std::string& name, bool deep);

// Runs `read` with SIGBUS turned into InspectError(4) ("the file shrank while being read").
void guard_sigbus(const std::function<void()>& read);

// Names of the files directly in /dev/shm (sorted), whatever they are.
std::vector<std::string> shm_files();

}  // namespace mpp::inspect
