#include "mpp/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/pipe.hpp"
#include "support/child.hpp"

using namespace std::chrono_literals;

namespace {

// A pipe whose ends are closed on scope exit.
struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    close_r();
    close_w();
  }
  void close_r() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_w() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  void put(const std::string& s) const {
    if (write(w, s.data(), s.size()) != static_cast<ssize_t>(s.size())) _exit(90);
  }
  template <class T>
  void put_value(const T& v) const {
    if (write(w, &v, sizeof v) != static_cast<ssize_t>(sizeof v)) _exit(91);
  }
  template <class T>
  T get_value() const {
    T v{};
    REQUIRE(read(r, &v, sizeof v) == static_cast<ssize_t>(sizeof v));
    return v;
  }
  // Everything until every writer closed.
  std::string read_all() const {
    std::string out;
    char buf[256];
    ssize_t n;
    while ((n = read(r, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0) out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // Blocks in the child until the parent writes a byte or closes.
  void wait_byte() const {
    char c;
    while (read(r, &c, 1) < 0 && errno == EINTR) {
    }
  }
};

bool reaped(pid_t pid) {
  errno = 0;
  return waitpid(pid, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

int open_pidfd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// Waits up to `timeout` for the process behind `pidfd` to end.
bool pidfd_ended(int pidfd, std::chrono::milliseconds timeout) {
  pollfd p{pidfd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, static_cast<int>(timeout.count()));
  while (r < 0 && errno == EINTR);
  return r == 1;
}

void do_nothing() {}

}  // namespace

TEST_CASE("a target with arguments runs in the child, which exits 0 and is reaped by join") {
  Pipe out;
  std::string text = "hello";
  mpp::Process p([&out](const std::string& s, int n) { out.put(s + std::to_string(n)); }, text, 42);
  CHECK(p.pid() == 0);
  CHECK_FALSE(p.exitcode());
  CHECK_FALSE(p.is_alive());
  p.start();
  CHECK(p.pid() > 0);
  p.join();
  out.close_w();
  CHECK(out.read_all() == "hello42");
  CHECK(p.exitcode() == 0);
  CHECK_FALSE(p.is_alive());
  CHECK(reaped(p.pid()));
  CHECK(access(("/proc/" + std::to_string(p.pid())).c_str(), F_OK) != 0);
}

TEST_CASE("function pointers, std::function and move-only arguments are accepted") {
  mpp::Process a(do_nothing);
  std::function<void(int)> f = [](int v) {
    if (v != 7) std::abort();
  };
  mpp::Process b(f, 7);
  mpp::Process c([](std::unique_ptr<int> v) { if (*v != 5) std::abort(); }, std::make_unique<int>(5));
  a.start();
  b.start();
  c.start();
  a.join();
  b.join();
  c.join();
  CHECK(a.exitcode() == 0);
  CHECK(b.exitcode() == 0);
  CHECK(c.exitcode() == 0);
}

TEST_CASE("start() drops the target and its arguments in the parent, as Python does") {
  auto held = std::make_shared<int>(1);
  mpp::Process p([](const std::shared_ptr<int>& v) { if (*v != 1) std::abort(); }, held);
  CHECK(held.use_count() == 2);
  p.start();
  CHECK(held.use_count() == 1);  // the parent's copy in the Process is gone
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("a Pipe end moved into a Process is closed in the parent: recv until EOFError") {
  auto [parent_conn, child_conn] = mpp::Pipe<int>();
  mpp::Process p(
      [](mpp::Connection<int>& conn) {
        for (int i = 0; i < 3; ++i) conn.send(i);
      },
      std::move(child_conn));
  p.start();
  std::vector<int> got;
  // Before start() dropped the target, the parent's copy of child_conn kept the socket
  // open and this loop never ended.
  try {
    for (;;) got.push_back(parent_conn.recv());
  } catch (const mpp::EOFError&) {
    got.push_back(-1);
  }
  CHECK(got == std::vector<int>{0, 1, 2, -1});
  p.join();
  CHECK(p.exitcode() == 0);
}

namespace {
class Reporter : public mpp::Process {
 public:
  explicit Reporter(int fd) : fd_(fd) {}

 protected:
  void run() override {
    std::string s = name() + "|" + mpp::current_process().name() + "|" +
                    std::to_string(mpp::current_process().pid() == getpid()) + "|" +
                    (mpp::parent_process() ? mpp::parent_process()->name() : "none") + "|" +
                    std::to_string(mpp::parent_process() && mpp::parent_process()->pid() == getppid());
    if (write(fd_, s.data(), s.size()) < 0) _exit(3);
  }

 private:
  int fd_;
};
}  // namespace

TEST_CASE("a subclass overriding run() gets Python's default name, and current/parent_process") {
  Pipe out;
  Reporter r(out.w);
  std::string n = r.name();
  CHECK(n.rfind("Reporter-", 0) == 0);
  r.start();
  r.join();
  out.close_w();
  CHECK(out.read_all() == n + "|" + n + "|1|MainProcess|1");
  CHECK(r.exitcode() == 0);
  CHECK(mpp::current_process().name() == "MainProcess");
  CHECK(mpp::current_process().pid() == getpid());
  CHECK_FALSE(mpp::parent_process());
}

TEST_CASE("default names count up, and a child's children are named Process-N:M") {
  mpp::Process a(do_nothing), b(do_nothing);
  std::string an = a.name(), bn = b.name();
  REQUIRE(an.rfind("Process-", 0) == 0);
  CHECK(std::stoi(bn.substr(8)) == std::stoi(an.substr(8)) + 1);
  a.name("custom");
  CHECK(a.name() == "custom");

  Pipe out;
  mpp::Process outer([&out] {
    mpp::Process inner([&out] { out.put(mpp::current_process().name()); });
    inner.start();
    inner.join();
  });
  std::string on = outer.name();
  outer.start();
  outer.join();
  out.close_w();
  CHECK(out.read_all() == on + ":1");
}

TEST_CASE("terminate() and kill() make exitcode -15 and -9") {
  Pipe ready;
  mpp::Process t([&ready] {
    ready.put("x");
    for (;;) pause();
  });
  mpp::Process k([&ready] {
    ready.put("y");
    for (;;) pause();
  });
  t.start();
  k.start();
  char buf[2];
  REQUIRE(read(ready.r, buf, 2) >= 1);
  CHECK(t.is_alive());
  CHECK_FALSE(t.exitcode());  // empty while running
  t.terminate();
  k.kill();
  t.join();
  k.join();
  CHECK(t.exitcode() == -SIGTERM);
  CHECK(k.exitcode() == -SIGKILL);
  t.terminate();  // after the end: nothing to signal, no error
  k.kill();
}

TEST_CASE("join(timeout) on a child that never ends returns false, after terminate it returns true") {
  mpp::Process p([] {
    for (;;) pause();
  });
  p.start();
  CHECK_FALSE(p.join(20ms));
  CHECK(p.is_alive());
  CHECK_FALSE(p.exitcode());
  p.terminate();
  CHECK(p.join(30s));
  CHECK(p.exitcode() == -SIGTERM);
  CHECK(reaped(p.pid()));
}

TEST_CASE("an exception in the child prints 'Process NAME: TYPE: what()' and exits 1") {
  Pipe err;
  mpp::Process p([&err] {
    dup2(err.w, STDERR_FILENO);
    throw std::invalid_argument("bad thing");
  });
  p.name("thrower");
  p.start();
  p.join();
  err.close_w();
  CHECK(p.exitcode() == 1);
  CHECK(err.read_all() == "Process thrower: std::invalid_argument: bad thing\n");

  Pipe err2;
  mpp::Process q([&err2] {
    dup2(err2.w, STDERR_FILENO);
    throw 42;
  });
  q.name("int-thrower");
  q.start();
  q.join();
  err2.close_w();
  CHECK(q.exitcode() == 1);
  CHECK(err2.read_all() == "Process int-thrower: int (not derived from std::exception)\n");
}

TEST_CASE("misuse is a ProcessError with a clear message") {
  mpp::Process p(do_nothing);
  const std::string name = p.name();  // "Process-N": every message names the process
  CHECK_THROWS_WITH(p.join(), "cannot join process " + name +
                                  ": it has not been started; call start() first");
  CHECK_THROWS_WITH(p.terminate(), Catch::StartsWith("cannot terminate process " + name + ": "));
  CHECK_THROWS_WITH(p.kill(), Catch::StartsWith("cannot kill process " + name + ": "));
  p.start();
  CHECK_THROWS_WITH(p.start(), "cannot start process " + name + " twice");
  CHECK_THROWS_WITH(p.daemon(true), "cannot set daemon on process " + name + ": it has already started");
  p.join();
  p.close();
  CHECK_THROWS_WITH(p.is_alive(), "cannot query process " + name + ": it was closed");
  CHECK_THROWS_WITH(p.join(), "cannot join process " + name + ": it was closed");
  CHECK_THROWS_WITH(p.start(), Catch::Contains("closed"));
  p.close();  // closing twice is harmless, as in Python

  Pipe gate;
  mpp::Process running([&gate] {
    gate.close_w();
    gate.wait_byte();
  });
  running.start();
  CHECK_THROWS_WITH(running.close(), Catch::StartsWith("cannot close process " + running.name() + " while it is still running"));
  gate.put("x");
  running.join();
  running.close();

  mpp::Process never(do_nothing);
  never.close();  // never started: fine

  // A Process object copied into a child by fork is not the child's to join.
  mpp::Process other([] { for (;;) pause(); });
  other.start();
  Pipe verdict;
  mpp::Process judge([&] {
    try {
      other.join();
      verdict.put("joined");
    } catch (const mpp::ProcessError& e) {
      verdict.put(e.what());
    }
  });
  judge.start();
  judge.join();
  verdict.close_w();
  CHECK_THAT(verdict.read_all(), Catch::StartsWith("cannot join process " + other.name() + ": it is a child of pid") &&
                                     Catch::Contains("not of this process"));
  other.kill();
  other.join();
}

TEST_CASE("a daemon may not start children") {
  Pipe verdict;
  mpp::Process d([&verdict] {
    mpp::Process inner(do_nothing);
    try {
      inner.start();
      verdict.put("started");
    } catch (const mpp::ProcessError& e) {
      verdict.put(e.what());
    }
  });
  d.daemon(true);
  CHECK(d.daemon());
  d.start();
  d.join();
  verdict.close_w();
  CHECK_THAT(verdict.read_all(), Catch::Contains("daemonic processes are not allowed to have children"));
}

TEST_CASE("active_children lists running children and reaps ended ones") {
  Pipe gate;
  mpp::Process a([&gate] {
    gate.close_w();
    gate.wait_byte();
  });
  mpp::Process b(do_nothing);
  a.name("child-a");
  b.name("child-b");
  a.start();
  b.start();
  b.join();
  auto names = [] {
    std::vector<std::string> v;
    for (auto& c : mpp::active_children()) v.push_back(c.name());
    return v;
  };
  CHECK(names() == std::vector<std::string>{"child-a"});
  gate.close_w();  // a reads EOF and ends
  REQUIRE(pidfd_ended(a.sentinel(), 30s));
  CHECK(names().empty());  // and a was reaped by active_children
  CHECK(reaped(a.pid()));
  CHECK(a.exitcode() == 0);
}

TEST_CASE("a child whose Process object was destroyed is still reaped") {
  pid_t pid;
  int pidfd;
  {
    mpp::Process p(do_nothing);
    p.start();
    pid = p.pid();
    pidfd = dup(p.sentinel());
  }
  REQUIRE(pidfd_ended(pidfd, 30s));
  close(pidfd);
  CHECK(mpp::active_children().empty());
  CHECK(reaped(pid));
}

TEST_CASE("a daemon child is gone after its parent was SIGKILLed") {
  // The test process becomes a subreaper, so that the orphaned daemon is reparented to it
  // and can be reaped here instead of lingering under PID 1.
  REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  for (int round = 0; round < 20; ++round) {
    Pipe report;
    mpp::test::Child parent([&report](int ready_fd) {
      mpp::Process d([] {
        for (;;) pause();
      });
      d.daemon(true);
      d.start();
      report.put_value(d.pid());
      mpp::test::signal_ready(ready_fd);
      for (;;) pause();
    });
    REQUIRE(parent.wait_ready());
    pid_t daemon_pid = report.get_value<pid_t>();
    int pidfd = open_pidfd(daemon_pid);
    REQUIRE(pidfd >= 0);
    CHECK_FALSE(pidfd_ended(pidfd, 0ms));
    parent.kill_and_reap();
    CHECK(pidfd_ended(pidfd, 30s));
    close(pidfd);
    int status = 0;
    CHECK(waitpid(daemon_pid, &status, 0) == daemon_pid);  // reparented to us: reap it
    // Either PDEATHSIG killed it, or the parent died before the daemon's prctl ran and the
    // daemon saw that (getppid changed) and left with 1: the race at fork, handled.
    bool by_signal = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    bool by_race_check = WIFEXITED(status) && WEXITSTATUS(status) == 1;
    CHECK((by_signal || by_race_check));
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("at normal exit, non-daemon children are joined and daemon children terminated") {
  Pipe status, gate;
  int child_pidfd = -1, daemon_pidfd = -1;
  mpp::test::Child parent([&](int ready_fd) {
    mpp::Process c([&gate] {
      gate.close_w();
      gate.wait_byte();
    });
    mpp::Process d([] {
      for (;;) pause();
    });
    d.daemon(true);
    c.start();
    d.start();
    status.put_value(c.pid());
    status.put_value(d.pid());
    gate.close_w();  // only the child c may hold the gate open
    mpp::test::signal_ready(ready_fd);
    std::exit(0);  // normal exit: atexit runs mpp's join of the children
  });
  pid_t child_pid = status.get_value<pid_t>();
  pid_t daemon_pid = status.get_value<pid_t>();
  child_pidfd = open_pidfd(child_pid);
  daemon_pidfd = open_pidfd(daemon_pid);
  REQUIRE(child_pidfd >= 0);
  REQUIRE(daemon_pidfd >= 0);
  REQUIRE(parent.wait_ready());
  int parent_pidfd = open_pidfd(parent.pid());
  REQUIRE(parent_pidfd >= 0);
  // The daemon is terminated at exit; the parent cannot have exited yet, since it joins
  // the non-daemon child, which waits for the gate.
  CHECK(pidfd_ended(daemon_pidfd, 30s));
  CHECK_FALSE(pidfd_ended(parent_pidfd, 0ms));
  gate.close_w();
  CHECK(parent.exit_code() == 0);
  CHECK(pidfd_ended(child_pidfd, 0ms));  // it ended before its parent did
  close(child_pidfd);
  close(daemon_pidfd);
  close(parent_pidfd);
}

TEST_CASE("the child leaves with _exit: no atexit handler of the parent runs in it") {
  static int fd = -1;
  Pipe out;
  fd = out.w;
  mpp::test::Child helper([&](int) {
    std::atexit([] { (void)!write(fd, "atexit", 6); });
    mpp::Process p([] { std::printf("child output\n"); });
    p.start();
    p.join();
    _exit(p.exitcode() == 0 ? 0 : 1);
  });
  CHECK(helper.exit_code() == 0);
  out.close_w();
  CHECK(out.read_all().empty());
}

TEST_CASE("the child's stdin is /dev/null as Python's children's sys.stdin") {
  // The parent's stdin has input waiting; the child must not be able to take it.
  Pipe in, out;
  REQUIRE(write(in.w, "parent's input", 14) == 14);
  const int saved = dup(STDIN_FILENO);
  REQUIRE(saved >= 0);
  REQUIRE(dup2(in.r, STDIN_FILENO) == STDIN_FILENO);
  mpp::Process p([&out] {
    char c;
    out.put(read(STDIN_FILENO, &c, 1) == 0 ? "eof" : "read something");
  });
  p.start();
  REQUIRE(dup2(saved, STDIN_FILENO) == STDIN_FILENO);
  close(saved);
  p.join();
  out.close_w();
  CHECK(out.read_all() == "eof");
  char buf[32];
  CHECK(read(in.r, buf, sizeof buf) == 14);  // still there for the parent
}

TEST_CASE("cpu_count is positive") { CHECK(mpp::cpu_count() >= 1); }
