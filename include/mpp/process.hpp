// mpp::Process — Python's multiprocessing.Process on Linux fork().
//
//   mpp::Process p(task, "Process 1", 1);   // any callable, any copyable/movable arguments
//   p.start();
//   p.join();
//   std::optional<int> code = p.exitcode(); // 0, 1 after an exception, -N after signal N
//
// or derive from mpp::Process and override run(), as with Python's subclassing.
//
// The child is a fork() of the caller: it sees a copy of the parent's memory at the moment
// of start() (data is isolated afterwards, as in Python). It runs the target inside a try
// block and leaves with _exit after flushing stdout and stderr: 0 when the target returns,
// 1 after printing "Process NAME: TYPE: what()" to stderr when it throws. It never runs
// the parent's atexit handlers or static destructors. Before it leaves it joins its own
// non-daemon children, as Python's children do. Its standard input is /dev/null (Python's
// children read sys.stdin from os.devnull), so that parent and children never race for the
// terminal's input; standard output and error are shared with the parent.
//
// Fork safety: POSIX only guarantees async-signal-safe calls in the child of a process
// that had several threads. Start processes before starting threads (mpp forks its own
// pool workers before it starts any thread of its own); a thread that holds a lock at the
// moment of fork leaves that lock held forever in the child. mpp's own process registry
// is made fork-safe with pthread_atfork.
//
// Lifetime: destroying a Process object does not stop or detach its child: like Python,
// the child stays registered, is reaped by active_children(), by the next start() and at
// exit, so no zombie is left. At normal exit of the parent (return from main, std::exit),
// daemon children are sent SIGTERM (then SIGKILL if they are still there 5 s later) and
// every child is joined. Daemon children are also gone when the parent is killed with
// SIGKILL (they get PR_SET_PDEATHSIG). Caveat of Linux: the parent-death signal fires when
// the *thread* that called start() ends; start daemons from a long-lived thread.
//
// If something else reaps mpp's children (SIGCHLD set to SIG_IGN, a waitpid(-1) loop), the
// exit code is lost; mpp then throws ProcessError saying so.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <concepts>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/errors.hpp"

namespace mpp {

namespace detail {
struct ProcessState;

// A type-erased, move-only "call the target with its arguments" (std::function would
// require copyable arguments).
struct ProcessTarget {
  virtual ~ProcessTarget() = default;
  virtual void operator()() = 0;
};

template <class F, class... Args>
struct BoundProcessTarget final : ProcessTarget {
  using Tuple = std::tuple<Args...>;
  BoundProcessTarget(F f, Tuple args) : f_(std::move(f)), args_(std::move(args)) {}
  // Runs once, in the child: arguments are passed as lvalues when the target accepts that
  // (so `T&` parameters work), else moved (so move-only arguments work).
  void operator()() override {
    if constexpr (std::invocable<F&, Args&...>) {
      std::apply(f_, args_);
    } else {
      std::apply(f_, std::move(args_));
    }
  }
  F f_;
  Tuple args_;
};
}  // namespace detail

// What a process knows about itself or its parent (Python: current_process(),
// parent_process()).
class ProcessInfo {
 public:
  // A record of these three facts; it looks nothing up (current_process() and
  // parent_process() fill it in).
  ProcessInfo(std::string name, pid_t pid, bool daemon) : name_(std::move(name)), pid_(pid), daemon_(daemon) {}
  // The process's name ("MainProcess" for the main one, as in Python), its pid, and whether
  // it was started as a daemon; the values when the record was made.
  const std::string& name() const noexcept { return name_; }
  pid_t pid() const noexcept { return pid_; }
  bool daemon() const noexcept { return daemon_; }

 private:
  std::string name_;
  pid_t pid_;
  bool daemon_;
};

// Python's multiprocessing.Process: a child process, forked by start(), that runs a target
// or an overridden run() (see the top of this file).
class Process {
 public:
  // A process with no target: run() does nothing unless a subclass overrides it.
  Process();

  // A process that calls target(args...) in the child. The target and the arguments are
  // stored by value (decayed) now; use std::ref to pass a reference (to the child's copy
  // of the object, since the child is a fork). As Python, start() drops the target and
  // the arguments in the parent: a Pipe end handed over with std::move(conn) is closed in
  // the parent once the child has it, so the parent sees EOFError when the child is done.
  // A move-only argument passed as an lvalue (a Connection, say) fails to compile with one
  // static_assert naming the right call.
  template <class F, class... Args>
    requires(!std::is_base_of_v<Process, std::remove_cvref_t<F>>)
  explicit Process(F&& target, Args&&... args) : Process() {
    constexpr bool storable = (std::is_constructible_v<std::decay_t<Args>, Args&&> && ...);
    static_assert(storable,
                  "mpp::Process stores its arguments by value and this one cannot be copied: "
                  "hand it over with std::move(arg) (a Pipe end is then closed in the parent "
                  "after start()), or pass std::ref(arg)");
    constexpr bool callable = std::invocable<std::decay_t<F>&, std::decay_t<Args>&...> ||
                              std::invocable<std::decay_t<F>&, std::decay_t<Args>...>;
    static_assert(!storable || callable,
                  "mpp::Process: the target cannot be called with these arguments");
    if constexpr (storable && callable) {
      using Target = detail::BoundProcessTarget<std::decay_t<F>, std::decay_t<Args>...>;
      target_ = std::make_unique<Target>(std::forward<F>(target),
                                         typename Target::Tuple(std::forward<Args>(args)...));
    }
  }

  // Does not stop the child (see "Lifetime" above).
  virtual ~Process();
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // The name: set by name(std::string), else Python's default "Process-N" ("P-N" for a
  // subclass P; "Process-1:2" for the 2nd child of Process-1). Changing it after start()
  // changes it only in the parent.
  std::string name() const;
  void name(std::string new_name);

  // Whether the child is a daemon (default: the current process's daemon flag, false in
  // the main process). Throws ProcessError after start().
  bool daemon() const;
  void daemon(bool is_daemon);

  // Forks the child, which calls run(). Throws ProcessError when already started, when
  // closed, when called in a daemon process (daemons may not have children) or on a
  // Process object made by another process; OSError when fork fails.
  void start();

  // Waits until the child ends and reaps it. Throws ProcessError before start(), after
  // close(), or when called in another process than the one that started it.
  void join();

  // As join(), waiting at most `timeout`. Returns whether the child ended (and was reaped).
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout));
  }

  // True between start() and the child's end. Reaps the child when it has ended.
  bool is_alive();

  // The child's pid after start(); 0 before (Python: None).
  pid_t pid() const;

  // Empty before start() and while the child runs; then its exit status, or -N when
  // signal N ended it (-15 after terminate(), -9 after kill()). Reaps the child.
  std::optional<int> exitcode();

  // Sends SIGTERM / SIGKILL to the child, unless it has already ended and been reaped.
  // Throws ProcessError before start() or after close().
  void terminate();
  void kill();

  // A file descriptor (a pidfd) that becomes readable when the child ends, for poll() on
  // many processes (Python: sentinel). -1 before start(). Valid until close().
  int sentinel() const;

  // Releases the Process's resources (the pidfd). Throws ProcessError while the child
  // runs. Afterwards every method except name() and pid() throws ProcessError.
  void close();

 protected:
  // What the child runs. The default calls the target given to the constructor.
  virtual void run();

 private:
  bool join_for(std::chrono::nanoseconds timeout);
  detail::ProcessState& state() const;
  [[noreturn]] void child_main();

  std::shared_ptr<detail::ProcessState> state_;
  std::unique_ptr<detail::ProcessTarget> target_;
};

// The process this code runs in: "MainProcess" in the main program, the Process's name in
// a child started by mpp, with the current pid.
ProcessInfo current_process();

// The process that started this one, or nullopt in the main process.
std::optional<ProcessInfo> parent_process();

// The children started by this process that are still running. Reaps those that ended.
std::vector<ProcessInfo> active_children();

// The number of CPUs online (at least 1). (Python: os.cpu_count().)
int cpu_count();

}  // namespace mpp
