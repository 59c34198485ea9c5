#include "mpp/detail/os/child.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

namespace mpp::detail::os {

void flush_std_streams() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
    // A stream set to throw on failure: what it held is lost either way.
  }
  std::fflush(stdout);
  std::fflush(stderr);
}

pid_t fork_child(bool die_with_parent) {
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0 && die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
  }
  return pid;
}

Fd pidfd_open(pid_t pid) noexcept {
#ifdef SYS_pidfd_open
  return Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
  (void)pid;
  return Fd();
#endif
}

}  // namespace mpp::detail::os
