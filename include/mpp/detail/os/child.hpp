// The OS layer's calls for mpp's own child processes: every fork mpp does (Process, the Pool's
// spawner and workers, a network manager's server) and every pidfd it watches goes through
// these, so each subtlety (the race between fork and the parent-death signal, output printed
// twice) is handled once.
#pragma once

#include <sys/types.h>

#include "mpp/detail/os/fd.hpp"

namespace mpp::detail::os {

// Flushes the C++ standard streams (cout, cerr, clog) and C's stdout and stderr. Before a
// fork, so that output buffered in the parent is not printed again by the child; in a child,
// before _exit(2), which flushes nothing.
void flush_std_streams() noexcept;

// fork(2) for a child of mpp's own. With `die_with_parent`, the child gets SIGKILL when the
// parent ends (PR_SET_PDEATHSIG: strictly, when the forking thread ends), and a child whose
// parent ended between fork and prctl _exits(1) at once, as no signal would come then.
// Returns as fork(2): the child's pid in the parent, 0 in the child, -1 (errno set) when it
// fails. Callers flush_std_streams() first when the child may print.
pid_t fork_child(bool die_with_parent);

// A pidfd of child `pid` (readable once it has ended; close-on-exec), or no descriptor on a
// kernel before 5.3 (callers then fall back to waitpid). The child must not have been
// reaped yet, or the pid could name another process by now.
Fd pidfd_open(pid_t pid) noexcept;

}  // namespace mpp::detail::os
