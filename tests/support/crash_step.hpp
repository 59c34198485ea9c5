// Store-by-store crash tests: run a mutation in a forked child that SIGKILLs itself just
// before its n-th store (detail::crash_step), for n = 1, 2, ... until the mutation finishes
// with fewer stores, and check what recovery makes of each state in between.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <stdexcept>
#include <string>

#include "mpp/detail/crash_step.hpp"

namespace mpp::test {

// Runs `mutation` in a forked child killed before its n-th store. Returns true when the
// child was killed there, false when it finished first (n is past its last store). Throws
// when the child failed otherwise (an exception, another signal).
inline bool killed_at_store(long n, const std::function<void()>& mutation) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(97);
    mpp::detail::crash_countdown = n;
    try {
      mutation();
    } catch (...) {
      _exit(99);
    }
    _exit(0);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) return true;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return false;
  throw std::runtime_error("the mutating child failed (wait status " + std::to_string(st) + ")");
}

}  // namespace mpp::test
