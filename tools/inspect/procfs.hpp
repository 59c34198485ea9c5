// What /proc says about the processes around a segment: who is alive, who maps which
// file of /dev/shm. mpp-inspect trusts /proc, not the segment, for liveness: a pid written
// in a segment may have died, or been reused by an unrelated process since.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mpp::inspect {

// Whether a process with this pid exists now (zombies count as dead).
bool pid_alive(pid_t pid);

// The pid's start time as seconds since the epoch, from /proc/<pid>/stat and the boot
// time; nullopt when the process does not exist.
std::optional<double> process_start_time(pid_t pid);

// Whether `pid` is alive AND is the same process that existed at `since` (seconds since
// the epoch): a process that started after `since` merely reuses the pid.
bool same_process_alive(pid_t pid, double since);

// For every file /dev/shm/<name>, the pids of live processes that map it, from
// /proc/*/maps. Processes whose maps we may not read are skipped.
std::map<std::string, std::vector<pid_t>> shm_mappers();

// An anonymous segment (a memfd named "mpp-segment", in no directory), as /proc shows it.
struct MemfdSegment {
  std::string name;              // "memfd:<inode>": how mpp-inspect names it
  std::uint64_t inode = 0;
  std::vector<pid_t> mapped_by;  // live processes that map it (from /proc/*/maps)
  // Paths that open it: /proc/PID/fd/N of a process holding its descriptor (a growable
  // segment keeps one), else /proc/PID/map_files/RANGE of a mapping (needs
  // CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
  std::vector<std::string> paths;
};

// Every anonymous mpp segment mapped or held open by a process we may look at, by inode.
std::vector<MemfdSegment> memfd_segments();

// The command name of a pid (/proc/<pid>/comm), or "?".
std::string process_name(pid_t pid);

}  // namespace mpp::inspect
