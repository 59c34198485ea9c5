// A test hook for proving crash contracts store by store: every store that changes a shared
// container's truth or its intent record is preceded by crash_step(). A crash test sets
// crash_countdown = N in a forked child; the child then raises SIGKILL on itself just before
// its N-th such store, so the test can kill a mutation between any two of its stores and
// then check what recovery makes of it. 0 (the default, never set in production) disables
// it: one load and a predictable branch per store.
#pragma once

#include <signal.h>

namespace mpp::detail {

// Stores left before the self-kill (0: off). Per process: set it only in a forked child.
inline long crash_countdown = 0;

inline void crash_step() noexcept {
  if (crash_countdown > 0 && --crash_countdown == 0) ::raise(SIGKILL);
}

}  // namespace mpp::detail
