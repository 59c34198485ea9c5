#include "mpp/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "mpp/detail/demangle.hpp"
#include "mpp/detail/os/child.hpp"
#include "mpp/detail/process_self.hpp"

namespace mpp {
namespace detail {

// The parent's record of one child. Shared between the Process object and the registry,
// so that a child outlives its Process object until it is reaped.
struct ProcessState {
  std::mutex m;  // serializes reaping and signalling against each other
  std::string name;
  bool name_set = false;
  bool daemon = false;
  std::vector<int> identity;  // Python's _identity: (1,), (1, 2) for a grandchild ...
  pid_t pid = 0;
  pid_t parent_pid = 0;  // the process that started it; only it may join/signal it
  os::Fd pidfd;
  bool started = false;
  bool closed = false;
  std::optional<int> exitcode;
};

}  // namespace detail

namespace {

using detail::ProcessState;
namespace os = detail::os;

// This process's children and name counter. A fork child starts with an empty one
// (pthread_atfork), as Python's children start with an empty _children set.
struct Registry {
  std::mutex m;
  std::vector<std::shared_ptr<ProcessState>> children;
  int counter = 0;
};

// The current process's identity, as Python's _current_process.
struct Self {
  std::string name = "MainProcess";
  bool daemon = false;
  std::vector<int> identity;
  std::optional<ProcessInfo> parent;
};

Self g_self;
bool g_atexit_registered = false;

void atfork_prepare();
void atfork_parent();
void atfork_child();

Registry& registry() {
  // Never destroyed: atexit handlers and late-running children may use it after static
  // destructors ran.
  static Registry* r = [] {
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    return new Registry;
  }();
  return *r;
}

// Holding the registry lock across fork keeps its vector consistent in the child, which
// then empties it: the parent's children are not the child's.
void atfork_prepare() { registry().m.lock(); }
void atfork_parent() { registry().m.unlock(); }
void atfork_child() {
  Registry& r = registry();
  r.children.clear();
  r.counter = 0;
  r.m.unlock();
}

int decode_status(int status) {
  return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

// Reaps the child if it has ended. Returns whether it has (now or earlier).
bool try_reap(ProcessState& s) {
  std::lock_guard lock(s.m);
  if (s.exitcode) return true;
  int status = 0;
  pid_t r;
  do r = ::waitpid(s.pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r < 0) {
    if (errno == ECHILD) {
      throw ProcessError("process " + s.name + " (pid " + std::to_string(s.pid) +
                         ") was reaped by someone else (SIGCHLD ignored, or a waitpid(-1) "
                         "elsewhere); its exit code is lost. Leave SIGCHLD at its default "
                         "and reap only your own pids.");
    }
    throw_os_error(errno, "waitpid(" + std::to_string(s.pid) + ")");
  }
  s.exitcode = decode_status(status);
  return true;
}

void forget(const std::shared_ptr<ProcessState>& s) {
  Registry& r = registry();
  std::lock_guard lock(r.m);
  std::erase(r.children, s);
}

// Waits until the child has ended (without reaping it), or the deadline passes.
bool wait_ended(ProcessState& s, std::optional<std::chrono::steady_clock::time_point> deadline) {
  using Clock = std::chrono::steady_clock;
  if (s.pidfd) {
    for (;;) {
      int ms = -1;
      if (deadline) {
        auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
        ms = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
      }
      pollfd p{s.pidfd.get(), POLLIN, 0};
      int r = ::poll(&p, 1, ms);
      if (r > 0) return true;
      if (r == 0) return false;
      if (errno != EINTR) throw_os_error(errno, "poll(pidfd)");
    }
  }
  // No pidfd (a kernel before 5.3): block in waitid without reaping, or poll with backoff.
  if (!deadline) {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(s.pid), &info, WEXITED | WNOWAIT) < 0) {
      if (errno != EINTR) return true;  // try_reap reports the error
    }
    return true;
  }
  auto nap = std::chrono::microseconds(100);
  for (;;) {
    if (try_reap(s)) return true;
    if (Clock::now() >= *deadline) return false;
    std::this_thread::sleep_for(nap);
    nap = std::min<std::chrono::microseconds>(nap * 2, std::chrono::milliseconds(20));
  }
}

// Python's util._exit_function: terminate daemon children, then join every child.
void join_children_at_exit() noexcept {
  try {
    std::vector<std::shared_ptr<ProcessState>> kids;
    {
      Registry& r = registry();
      std::lock_guard lock(r.m);
      kids = r.children;
    }
    for (auto& k : kids) {
      if (k->daemon && !try_reap(*k)) {
        std::lock_guard lock(k->m);
        if (!k->exitcode) ::kill(k->pid, SIGTERM);
      }
    }
    for (auto& k : kids) {
      if (k->daemon && !wait_ended(*k, std::chrono::steady_clock::now() + std::chrono::seconds(5))) {
        std::lock_guard lock(k->m);
        if (!k->exitcode) ::kill(k->pid, SIGKILL);
      }
      wait_ended(*k, std::nullopt);
      try_reap(*k);
      forget(k);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpp: joining children at exit: %s\n", e.what());
  }
}

std::string join_identity(const std::vector<int>& identity) {
  std::string s;
  for (int i : identity) {
    if (!s.empty()) s += ':';
    s += std::to_string(i);
  }
  return s;
}

// "mpp::Process" -> "Process", "ns::Worker<int>" -> "Worker".
std::string short_class_name(std::string n) {
  n = n.substr(0, n.find('<'));
  auto colon = n.rfind("::");
  return colon == std::string::npos ? n : n.substr(colon + 2);
}

}  // namespace

Process::Process() : state_(std::make_shared<ProcessState>()) {
  Registry& r = registry();
  std::lock_guard lock(r.m);
  state_->identity = g_self.identity;
  state_->identity.push_back(++r.counter);
  state_->daemon = g_self.daemon;
}

Process::~Process() = default;
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&&) noexcept = default;

ProcessState& Process::state() const {
  if (!state_) throw ProcessError("this Process object was moved from");
  return *state_;
}

std::string Process::name() const {
  const ProcessState& s = state();
  if (s.name_set || s.started) return s.name;
  return short_class_name(detail::demangle(typeid(*this))) + "-" + join_identity(s.identity);
}

void Process::name(std::string new_name) {
  ProcessState& s = state();
  std::lock_guard lock(s.m);
  s.name = std::move(new_name);
  s.name_set = true;
}

bool Process::daemon() const { return state().daemon; }

void Process::daemon(bool is_daemon) {
  ProcessState& s = state();
  if (s.started) throw ProcessError("cannot set daemon on process " + name() + ": it has already started");
  s.daemon = is_daemon;
}

pid_t Process::pid() const { return state().pid; }

int Process::sentinel() const { return state().pidfd.get(); }

namespace {

// `name` is the Process's name() (before start() the state holds none yet).
void check_usable(const ProcessState& s, const std::string& name, const char* what) {
  const std::string head = std::string("cannot ") + what + " process " + name + ": ";
  if (s.closed) throw ProcessError(head + "it was closed");
  if (!s.started) throw ProcessError(head + "it has not been started; call start() first");
  if (s.parent_pid != ::getpid()) {
    throw ProcessError(head + "it is a child of pid " + std::to_string(s.parent_pid) +
                       ", not of this process");
  }
}

}  // namespace

void Process::start() {
  ProcessState& s = state();
  std::string my_name = name();
  if (s.closed) throw ProcessError("cannot start process " + my_name + ": it was closed");
  if (s.started) throw ProcessError("cannot start process " + my_name + " twice");
  if (g_self.daemon) {
    throw ProcessError("cannot start process " + my_name + ": daemonic processes are not allowed to have children");
  }
  (void)active_children();  // reap what ended, as Python's start() does
  if (!g_atexit_registered) {
    if (std::atexit(join_children_at_exit) != 0) throw ProcessError("atexit registration failed");
    g_atexit_registered = true;
  }
  s.name = my_name;
  s.name_set = true;
  // Unflushed output would otherwise be written twice, once by each process.
  os::flush_std_streams();
  const pid_t parent = ::getpid();
  const pid_t pid = os::fork_child(s.daemon);
  if (pid < 0) throw_os_error(errno, "fork (starting process " + my_name + ")");
  if (pid == 0) {
    // As Python's util._close_stdin. A failure leaves stdin as it was: not worth failing for.
    if (int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC); null_fd >= 0) {
      if (null_fd != STDIN_FILENO) {
        ::dup2(null_fd, STDIN_FILENO);
        ::close(null_fd);
      } else {
        ::fcntl(STDIN_FILENO, F_SETFD, 0);  // stdin was closed: keep the new one across exec
      }
    }
    ProcessInfo parent_info(g_self.name, parent, g_self.daemon);
    g_self.name = my_name;
    g_self.daemon = s.daemon;
    g_self.identity = s.identity;
    g_self.parent = parent_info;
    child_main();
  }
  s.pid = pid;
  s.parent_pid = parent;
  s.pidfd = os::pidfd_open(pid);  // the child cannot be reaped (and its pid reused) before this
  s.started = true;
  // Python's start() drops _target and _args in the parent: the child has its copy, and
  // an argument such as a moved-in Pipe end must not stay open here (the parent would
  // never see EOF on the other end).
  target_.reset();
  Registry& r = registry();
  std::lock_guard lock(r.m);
  r.children.push_back(state_);
}

void Process::child_main() {
  int code = 0;
  try {
    run();
  } catch (const std::exception& e) {
    os::flush_std_streams();
    std::fprintf(stderr, "Process %s: %s: %s\n", g_self.name.c_str(),
                 detail::current_exception_type_name().c_str(), e.what());
    code = 1;
  } catch (...) {
    os::flush_std_streams();
    std::fprintf(stderr, "Process %s: %s (not derived from std::exception)\n", g_self.name.c_str(),
                 detail::current_exception_type_name().c_str());
    code = 1;
  }
  join_children_at_exit();
  os::flush_std_streams();
  ::_exit(code);
}

void Process::run() {
  if (target_) (*target_)();
}

void Process::join() {
  ProcessState& s = state();
  check_usable(s, name(), "join");
  wait_ended(s, std::nullopt);
  try_reap(s);
  forget(state_);
}

bool Process::join_for(std::chrono::nanoseconds timeout) {
  ProcessState& s = state();
  check_usable(s, name(), "join");
  if (!wait_ended(s, std::chrono::steady_clock::now() + timeout)) return false;
  if (!try_reap(s)) return false;
  forget(state_);
  return true;
}

bool Process::is_alive() {
  ProcessState& s = state();
  if (s.closed) throw ProcessError("cannot query process " + name() + ": it was closed");
  if (!s.started) return false;
  check_usable(s, name(), "query");
  if (!try_reap(s)) return true;
  forget(state_);
  return false;
}

std::optional<int> Process::exitcode() {
  ProcessState& s = state();
  if (s.closed) throw ProcessError("cannot query process " + name() + ": it was closed");
  if (!s.started) return std::nullopt;
  check_usable(s, name(), "query");
  if (!try_reap(s)) return std::nullopt;
  forget(state_);
  return s.exitcode;
}

namespace {
void send_signal(ProcessState& s, const std::string& name, int sig, const char* what) {
  check_usable(s, name, what);
  std::lock_guard lock(s.m);
  // Until it is reaped (under this lock) the pid is ours: it cannot name another process.
  if (!s.exitcode && ::kill(s.pid, sig) != 0 && errno != ESRCH) {
    throw_os_error(errno, std::string(what) + " process " + name);
  }
}
}  // namespace

void Process::terminate() { send_signal(state(), name(), SIGTERM, "terminate"); }
void Process::kill() { send_signal(state(), name(), SIGKILL, "kill"); }

void Process::close() {
  ProcessState& s = state();
  if (s.closed) return;
  if (s.started) {
    check_usable(s, name(), "close");
    if (!try_reap(s)) {
      throw ProcessError("cannot close process " + name() +
                         " while it is still running; call join() or terminate() first");
    }
    forget(state_);
  }
  std::lock_guard lock(s.m);
  s.pidfd.reset();
  s.closed = true;
}

void detail::become_forked_child(std::string name, bool daemon, const ProcessInfo& parent) {
  g_self.name = std::move(name);
  g_self.daemon = daemon;
  g_self.identity.clear();
  g_self.parent = parent;
}

ProcessInfo current_process() { return ProcessInfo(g_self.name, ::getpid(), g_self.daemon); }

std::optional<ProcessInfo> parent_process() { return g_self.parent; }

std::vector<ProcessInfo> active_children() {
  std::vector<std::shared_ptr<ProcessState>> kids;
  {
    Registry& r = registry();
    std::lock_guard lock(r.m);
    kids = r.children;
  }
  std::vector<ProcessInfo> alive;
  for (auto& k : kids) {
    if (try_reap(*k)) {
      forget(k);
    } else {
      alive.emplace_back(k->name, k->pid, k->daemon);
    }
  }
  return alive;
}

int cpu_count() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace mpp
