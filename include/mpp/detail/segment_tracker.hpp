// The segment tracker: what removes a named, non-persisted segment from /dev/shm when its
// creator ends in any way (return, exit, an uncaught exception, SIGINT, SIGTERM, SIGKILL,
// a crash), as soon as no process maps it any more.
//
// Each process that creates a named segment gets one tracker process, started with its
// first such segment. The two are joined by a socket whose only copy of the creator's end
// lives in the creator (closed in forked children, closed on exec), so the tracker reads
// end-of-file exactly when the creator is gone, however it ended. From then on, and for a
// segment the creator released while others still mapped it, the tracker asks the kernel
// every 100 ms whether any process still has the segment open or mapped (a write lease
// is granted only when none does) and unlinks it under that lease when none does. It exits
// when its creator is gone and it tracks nothing: no daemon outlives the last user.
// docs/design/segment-lifetime.md gives the reasons for each choice.
//
// Contract for Segment (runtime/segment.cpp), its caller (and tests/segment_fuzz_test.cpp,
// which writes raw segment images this way so that a killed test leaves none behind):
//   - open_tracked_segment() instead of shm_open(O_CREAT | O_EXCL), for a segment that is
//     not persisted at creation;
//   - release_created_segment() when the creator's last handle is released (after its
//     munmap), instead of unlinking the segment itself.
// A segment whose header says persist (persist() in any process) is never removed here.
#pragma once

#include <sys/types.h>

#include <string>

namespace mpp::detail {

// Creates /dev/shm/<name> (O_RDWR | O_CREAT | O_EXCL, `mode`) through this process's
// tracker, starting it first if this process has none, and returns the file's descriptor
// (O_CLOEXEC). The tracker makes the file and knows it before handing it over, so no kill
// of this process at any moment can leak it. Returns -1 with errno set as shm_open() would
// (EEXIST...); throws OSError when no tracker can be started or reached.
int open_tracked_segment(const std::string& name, unsigned mode);

// The creator released its last handle (its mapping is gone): removes /dev/shm/<name> now
// if no process has it open or mapped, else leaves it to the tracker, which removes it when
// the last one is gone. Without a working tracker it removes the segment at once (the old
// contract: processes that map it keep their mapping).
void release_created_segment(const std::string& name) noexcept;

// The pid of this process's tracker, 0 when it has none (a fork of a creator has none until
// it creates a segment of its own). For tests and diagnostics.
pid_t segment_tracker_pid() noexcept;

// Test hook: whether a new tracker re-executes this program (/proc/self/exe) to shed the
// creator's memory (the default, when libmpp is linked into the main executable), or keeps
// running in the forked copy (the fallback, used when libmpp lives in a shared object).
void set_segment_tracker_reexec(bool reexec) noexcept;

}  // namespace mpp::detail
