// The Pool's spawner: a single-threaded process, forked by the PoolCore before any thread
// starts, that forks every worker (so a worker never inherits the parent's threads or locks),
// replaces one when told, and reports each death to the result queue.
#include "mpp/detail/pool_core.hpp"

#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "mpp/detail/os/child.hpp"
#include "mpp/detail/process_self.hpp"

#include "protocol.hpp"

namespace mpp::detail {

using namespace pool;

void PoolCore::spawner_main() {
  const ProcessInfo owner = current_process();
  become_forked_child("PoolSpawner", true, owner);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::signal(SIGCHLD, SIG_DFL);  // an ignored SIGCHLD would reap the workers behind our back
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  os::Fd sfd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd) ::_exit(1);
  std::vector<pid_t> pids(static_cast<std::size_t>(processes_), 0);
  int spawned = 0;

  auto post = [&](std::string frame) {
    seal_record(frame);
    try {
      results_->put(as_bytes(frame), std::nullopt);
    } catch (...) {
      ::_exit(1);
    }
  };
  auto spawn = [&](std::uint32_t slot) {
    ++spawned;
    pid_t p = os::fork_child(true);
    if (p == 0) {
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      sfd.reset();
      command_fd_.reset();
      become_forked_child("PoolWorker-" + std::to_string(spawned), true, owner);
      worker_main(static_cast<int>(slot));
    }
    if (p > 0) {
      pids[slot] = p;
    } else {
      std::string f = record_of(ResultHeader{0, ResultKind::init_failed, slot, 0, 0});
      append_error(f, "mpp::OSError", std::string("fork of a pool worker failed: ") + strerror(errno));
      post(f);
    }
  };

  for (std::uint32_t s = 0; s < pids.size(); ++s) spawn(s);
  for (;;) {
    pollfd fds[2] = {{command_fd_.get(), POLLIN, 0}, {sfd.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd.get(), &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      }
      int status = 0;
      pid_t p;
      while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = std::find(pids.begin(), pids.end(), p);
        if (it == pids.end()) continue;
        *it = 0;
        post(record_of(ResultHeader{0, ResultKind::died, static_cast<std::uint32_t>(it - pids.begin()), p, status}));
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      Command c{};
      ssize_t n = ::read(command_fd_.get(), &c, sizeof c);
      if (n < 0 && errno == EINTR) continue;
      if (n == static_cast<ssize_t>(sizeof c) && c.op == 'R') {
        if (c.slot < pids.size() && pids[c.slot] == 0) spawn(c.slot);
        continue;
      }
      break;  // 'K', or the owner closed its end (it is gone)
    }
  }
  for (pid_t p : pids) {
    if (p > 0) ::kill(p, SIGKILL);
  }
  for (pid_t p : pids) {
    if (p > 0) {
      while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  ::_exit(0);
}

}  // namespace mpp::detail
