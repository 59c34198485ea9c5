#include "mpp/pool.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>

#include "mpp/detail/demangle.hpp"
#include "mpp/detail/process_self.hpp"

namespace mpp {
namespace detail {
namespace {

// Address space of each worker's task queue and of the result queue (pages are used only
// as messages touch them). A task frame may use at most a quarter of a task queue.
constexpr std::size_t kTaskQueueBytes = std::size_t{64} << 20;
constexpr std::size_t kResultQueueBytes = std::size_t{128} << 20;
// Tasks queued for one worker before further ones wait in the parent's backlog. Enough to
// keep a worker busy with tiny tasks; an idle worker steals from the others.
constexpr std::size_t kMaxAssigned = 64;
// How often an idle result thread checks that the spawner is alive.
constexpr auto kSpawnerCheck = std::chrono::milliseconds(250);

struct Command {
  char op;  // 'R': replace the worker of `slot`; 'K': kill every worker and exit
  char pad[3];
  std::uint32_t slot;
};

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

void flush_std_streams() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(stdout);
  std::fflush(stderr);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

void append_error(std::string& out, const std::string& type, const std::string& message) {
  auto n = static_cast<std::uint32_t>(type.size());
  append_raw(out, &n, sizeof n);
  out += type;
  out += message;
}

std::pair<std::string, std::string> parse_error(ByteView payload) {
  Reader r(payload);
  auto n = r.take_raw<std::uint32_t>();
  std::string type(as_chars(r.take(n)));
  std::string message(as_chars(payload.subspan(sizeof n + n)));
  return {std::move(type), std::move(message)};
}

std::string frame_of(const ResultHeader& h) {
  std::string out;
  append_raw(out, &h, sizeof h);
  return out;
}

void copy_message(void* ctx, ByteView bytes) {
  static_cast<std::string*>(ctx)->assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

PoolCore::PoolCore(int processes, std::function<void()> initializer, std::size_t maxtasksperchild)
    : processes_(processes), initializer_(std::move(initializer)),
      maxtasksperchild_(maxtasksperchild), owner_pid_(::getpid()) {
  slots_.resize(static_cast<std::size_t>(processes));
  for (auto& s : slots_) {
    s.tasks = std::make_unique<QueueCore>(
        QueueCore::standalone(ObjectKind::queue, 0, kTaskQueueBytes, "mpp::Pool task"));
  }
  results_ = std::make_unique<QueueCore>(
      QueueCore::standalone(ObjectKind::queue, 0, kResultQueueBytes, "mpp::Pool result"));
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_os_error(errno, "pipe2 (starting a Pool)");
  flush_std_streams();  // or buffered output would be printed again by the children
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw_os_error(e, "fork (starting a Pool's spawner process)");
  }
  if (pid == 0) {
    ::close(fds[1]);
    command_fd_ = fds[0];
    spawner_main();
  }
  ::close(fds[0]);
  command_fd_ = fds[1];
  spawner_pid_ = pid;
  spawner_pidfd_ = pidfd_open(pid);
  result_thread_ = std::thread([this] { result_loop(); });
}

PoolCore::~PoolCore() {
  if (::getpid() != owner_pid_) return;  // a fork of the owner: not ours to stop
  shutdown(false);
  if (spawner_pidfd_ >= 0) ::close(spawner_pidfd_);
}

// ---- the spawner: single-threaded, forks every worker ----

void PoolCore::spawner_main() {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != owner_pid_) ::_exit(0);
  const ProcessInfo owner = current_process();
  become_forked_child("PoolSpawner", true, owner);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::signal(SIGCHLD, SIG_DFL);  // an ignored SIGCHLD would reap the workers behind our back
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) ::_exit(1);
  const pid_t me = ::getpid();
  std::vector<pid_t> pids(static_cast<std::size_t>(processes_), 0);
  int spawned = 0;

  auto post = [&](const std::string& frame) {
    try {
      results_->put(as_bytes(frame), std::nullopt);
    } catch (...) {
      ::_exit(1);
    }
  };
  auto spawn = [&](std::uint32_t slot) {
    ++spawned;
    pid_t p = ::fork();
    if (p == 0) {
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      ::close(sfd);
      ::close(command_fd_);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != me) ::_exit(1);
      become_forked_child("PoolWorker-" + std::to_string(spawned), true, owner);
      worker_main(static_cast<int>(slot));
    }
    if (p > 0) {
      pids[slot] = p;
    } else {
      std::string f = frame_of(ResultHeader{0, ResultKind::init_failed, slot, 0, 0});
      append_error(f, "mpp::OSError", std::string("fork of a pool worker failed: ") + strerror(errno));
      post(f);
    }
  };

  for (std::uint32_t s = 0; s < pids.size(); ++s) spawn(s);
  for (;;) {
    pollfd fds[2] = {{command_fd_, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      }
      int status = 0;
      pid_t p;
      while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = std::find(pids.begin(), pids.end(), p);
        if (it == pids.end()) continue;
        *it = 0;
        post(frame_of(ResultHeader{0, ResultKind::died, static_cast<std::uint32_t>(it - pids.begin()), p, status}));
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      Command c{};
      ssize_t n = ::read(command_fd_, &c, sizeof c);
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

// ---- a worker ----

void PoolCore::worker_main(int slot) {
  const auto uslot = static_cast<std::uint32_t>(slot);
  const pid_t me = ::getpid();
  if (initializer_) {
    try {
      initializer_();
    } catch (...) {
      std::string f = frame_of(ResultHeader{0, ResultKind::init_failed, uslot, me, 0});
      std::string what = "unknown exception";
      try {
        throw;
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      append_error(f, current_exception_type_name(), what);
      try {
        results_->put(as_bytes(f), std::nullopt);
      } catch (...) {
      }
      flush_std_streams();
      ::_exit(1);
    }
  }
  QueueCore& tasks = *slots_[uslot].tasks;
  std::string in, out;
  std::size_t done = 0;
  for (;;) {
    tasks.get(copy_message, &in, std::nullopt);
    TaskHeader th{};
    ResultHeader rh{0, ResultKind::ok, uslot, me, 0};
    out.clear();
    try {
      if (in.size() < sizeof th) throw DecodeError("a pool task frame is truncated");
      std::memcpy(&th, in.data(), sizeof th);
      rh.task_id = th.task_id;
      if (in.size() < sizeof th + th.callable_size) throw DecodeError("a pool task frame is truncated");
      append_raw(out, &rh, sizeof rh);
      const auto* base = reinterpret_cast<const std::byte*>(in.data());
      th.trampoline(base + sizeof th,
                    ByteView(base + sizeof th + th.callable_size, in.size() - sizeof th - th.callable_size),
                    out);
    } catch (...) {
      std::string what = "unknown exception";
      try {
        throw;
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      rh.kind = ResultKind::error;
      out = frame_of(rh);
      append_error(out, current_exception_type_name(), what);
    }
    flush_std_streams();  // the task's output comes before its callback's
    try {
      results_->put(as_bytes(out), std::nullopt);
    } catch (const std::exception& e) {
      rh.kind = ResultKind::error;
      out = frame_of(rh);
      append_error(out, current_exception_type_name(), std::string("the result could not be sent: ") + e.what());
      results_->put(as_bytes(out), std::nullopt);
    }
    if (maxtasksperchild_ != 0 && ++done >= maxtasksperchild_) ::_exit(0);
  }
}

// ---- the parent ----

bool PoolCore::dispatch_locked(std::uint64_t id, const std::string& frame) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < slots_.size(); ++i) {
    if (slots_[i].assigned.size() < slots_[best].assigned.size()) best = i;
  }
  Slot& s = slots_[best];
  if (s.assigned.size() >= kMaxAssigned) return false;
  try {
    s.tasks->put(as_bytes(frame), Clock::now());
  } catch (const Full&) {
    return false;
  }
  s.assigned.push_back(id);
  return true;
}

void PoolCore::submit(std::string frame, Completion done) {
  if (frame.size() > kTaskQueueBytes / 4) {
    throw ValueError("a pool task of " + std::to_string(frame.size()) +
                     " bytes is too large (the limit is " + std::to_string(kTaskQueueBytes / 4) +
                     "); pass a smaller chunksize or smaller arguments");
  }
  std::lock_guard lock(m_);
  if (!broken_.empty()) throw BrokenPool(broken_);
  if (state_ != State::running) {
    throw BrokenPool(state_ == State::closed ? "the pool is closed: it takes no new tasks"
                                             : "the pool was terminated: it takes no new tasks");
  }
  const std::uint64_t id = next_id_++;
  std::memcpy(frame.data() + offsetof(TaskHeader, task_id), &id, sizeof id);
  pending_.emplace(id, Pending{std::move(done)});
  ++unfinished_;
  if (!backlog_.empty() || !dispatch_locked(id, frame)) backlog_.emplace_back(id, std::move(frame));
}

void PoolCore::refill_locked(std::vector<std::pair<Completion, Outcome>>&) {
  while (!backlog_.empty() && dispatch_locked(backlog_.front().first, backlog_.front().second)) {
    backlog_.pop_front();
  }
}

void PoolCore::steal_locked(std::size_t idle) {
  std::size_t victim = idle;
  std::size_t most = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    std::size_t q = i == idle ? 0 : slots_[i].tasks->qsize();
    if (q > most) {
      most = q;
      victim = i;
    }
  }
  if (victim == idle) return;
  std::string frame;
  try {
    slots_[victim].tasks->get(copy_message, &frame, Clock::now());
  } catch (const Empty&) {
    return;
  }
  std::uint64_t id;
  std::memcpy(&id, frame.data() + offsetof(TaskHeader, task_id), sizeof id);
  auto& va = slots_[victim].assigned;
  va.erase(std::find(va.begin(), va.end(), id));
  try {
    slots_[idle].tasks->put(as_bytes(frame), Clock::now());
    slots_[idle].assigned.push_back(id);
  } catch (const Full&) {
    backlog_.emplace_front(id, std::move(frame));
  }
}

void PoolCore::finish(Completion& c, const Outcome& o) {
  try {
    c(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpp::Pool: a callback threw %s: %s\n", current_exception_type_name().c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "mpp::Pool: a callback threw %s\n", current_exception_type_name().c_str());
  }
  std::lock_guard lock(m_);
  if (--unfinished_ == 0) all_done_.notify_all();
}

void PoolCore::on_result(const ResultHeader& h, ByteView payload, std::string&) {
  Completion done;
  {
    std::lock_guard lock(m_);
    auto it = pending_.find(h.task_id);
    if (it == pending_.end()) return;  // failed already (the pool broke)
    done = std::move(it->second.done);
    pending_.erase(it);
    if (h.slot < slots_.size()) {
      auto& a = slots_[h.slot].assigned;
      if (auto pos = std::find(a.begin(), a.end(), h.task_id); pos != a.end()) a.erase(pos);
      std::vector<std::pair<Completion, Outcome>> unused;
      refill_locked(unused);
      if (a.empty() && backlog_.empty()) steal_locked(h.slot);
    }
  }
  Outcome o;
  if (h.kind == ResultKind::ok) {
    o.ok = true;
    o.payload = payload;
  } else {
    try {
      auto [type, message] = parse_error(payload);
      o.error = std::make_exception_ptr(RemoteError(std::move(type), std::move(message)));
    } catch (...) {
      o.error = std::current_exception();
    }
  }
  finish(done, o);
}

void PoolCore::on_worker_died(const ResultHeader& h) {
  std::vector<Completion> lost;
  {
    std::lock_guard lock(m_);
    if (h.slot >= slots_.size()) return;
    Slot& s = slots_[h.slot];
    // The dead worker took its tasks from the front of its queue in order, one at a time:
    // those of its assigned tasks no longer queued were taken and not finished.
    std::size_t queued = s.tasks->qsize();
    std::size_t taken = s.assigned.size() > queued ? s.assigned.size() - queued : 0;
    for (std::size_t i = 0; i < taken; ++i) {
      auto it = pending_.find(s.assigned.front());
      s.assigned.pop_front();
      if (it == pending_.end()) continue;
      lost.push_back(std::move(it->second.done));
      pending_.erase(it);
    }
    if (!torn_down_ && broken_.empty()) {
      Command c{'R', {}, h.slot};
      if (::write(command_fd_, &c, sizeof c) != static_cast<ssize_t>(sizeof c)) {
        // The spawner is gone; the result loop notices and breaks the pool.
      }
    }
  }
  std::string msg = "pool worker pid " + std::to_string(h.pid) + " " + describe_status(h.status) +
                    " while running this task; the pool replaced it and goes on";
  for (auto& c : lost) finish(c, Outcome{false, {}, std::make_exception_ptr(WorkerLost(msg))});
}

void PoolCore::break_locked(const std::string& reason, std::vector<Completion>& failed) {
  if (broken_.empty()) broken_ = reason;
  for (auto& [id, p] : pending_) failed.push_back(std::move(p.done));
  pending_.clear();
  backlog_.clear();
  for (auto& s : slots_) s.assigned.clear();
}

void PoolCore::result_loop() {
  std::string buf, scratch;
  for (;;) {
    try {
      results_->get(copy_message, &buf, Clock::now() + kSpawnerCheck);
    } catch (const Empty&) {
      pollfd p{spawner_pidfd_, POLLIN, 0};
      if (spawner_pidfd_ >= 0 && ::poll(&p, 1, 0) == 1) {
        std::vector<Completion> failed;
        {
          std::lock_guard lock(m_);
          if (torn_down_) continue;
          break_locked("the pool's spawner process (pid " + std::to_string(spawner_pid_) +
                           ") died, and its workers with it; make a new Pool",
                       failed);
        }
        for (auto& c : failed) finish(c, Outcome{false, {}, std::make_exception_ptr(BrokenPool(broken_))});
      }
      continue;
    }
    if (buf.size() < sizeof(ResultHeader)) continue;
    ResultHeader h;
    std::memcpy(&h, buf.data(), sizeof h);
    ByteView payload(reinterpret_cast<const std::byte*>(buf.data()) + sizeof h, buf.size() - sizeof h);
    switch (h.kind) {
      case ResultKind::quit:
        return;
      case ResultKind::ok:
      case ResultKind::error:
        on_result(h, payload, scratch);
        break;
      case ResultKind::died:
        on_worker_died(h);
        break;
      case ResultKind::init_failed: {
        std::string reason;
        try {
          auto [type, message] = parse_error(payload);
          reason = "the pool's initializer failed in worker pid " + std::to_string(h.pid) + ": " + type +
                   ": " + message;
        } catch (const std::exception& e) {
          reason = std::string("the pool's initializer failed: ") + e.what();
        }
        std::vector<Completion> failed;
        {
          std::lock_guard lock(m_);
          break_locked(reason, failed);
        }
        for (auto& c : failed) finish(c, Outcome{false, {}, std::make_exception_ptr(BrokenPool(reason))});
        break;
      }
    }
  }
}

void PoolCore::post_quit() {
  results_->put(as_bytes(frame_of(ResultHeader{0, ResultKind::quit, 0, 0, 0})), std::nullopt);
}

void PoolCore::close() {
  std::lock_guard lock(m_);
  if (state_ == State::running) state_ = State::closed;
}

void PoolCore::terminate() {
  if (::getpid() != owner_pid_) throw ProcessError("terminate(): this Pool belongs to another process");
  if (on_result_thread()) throw ValueError("terminate() cannot be called from a pool callback");
  shutdown(false);
}

void PoolCore::join() {
  if (::getpid() != owner_pid_) throw ProcessError("join(): this Pool belongs to another process");
  {
    std::unique_lock lock(m_);
    if (state_ == State::running) throw ValueError("join(): call close() or terminate() first");
    if (on_result_thread()) throw ValueError("join() cannot be called from a pool callback");
    all_done_.wait(lock, [&] { return unfinished_ == 0; });
  }
  shutdown(true);
}

void PoolCore::shutdown(bool graceful) {
  std::vector<Completion> failed;
  {
    std::lock_guard lock(m_);
    if (torn_down_) return;
    torn_down_ = true;
    state_ = State::terminated;
    if (!graceful) break_locked("the pool was terminated before this task finished", failed);
  }
  for (auto& c : failed) finish(c, Outcome{false, {}, std::make_exception_ptr(BrokenPool(broken_))});
  post_quit();  // the result thread ends while the processes do
  // The spawner kills its workers (idle after a graceful join), reaps them and exits.
  Command k{'K', {}, 0};
  if (::write(command_fd_, &k, sizeof k) < 0) {
    // Already gone: the waitpid below reaps it all the same.
  }
  ::close(command_fd_);
  command_fd_ = -1;
  while (::waitpid(spawner_pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (result_thread_.joinable()) result_thread_.join();
}

}  // namespace detail

Pool::Pool(int processes, PoolOptions options) {
  if (processes < 0) throw ValueError("Pool: the number of processes must be at least 1, not " + std::to_string(processes));
  if (processes == 0) processes = cpu_count();
  core_ = std::make_unique<detail::PoolCore>(processes, std::move(options.initializer), options.maxtasksperchild);
}

Pool::~Pool() = default;

}  // namespace mpp
