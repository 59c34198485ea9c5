// A named segment never outlives its users: whatever ends its creator (a signal, SIGKILL,
// an uncaught exception, a normal exit), it stays while another process maps it, is gone
// from /dev/shm within 1 s of its last user's end, and no tracker process is left behind.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_tracker.hpp"
#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"
#include "support/shm.hpp"

using namespace std::chrono_literals;
using mpp::detail::Segment;
using mpp::test::Child;
using mpp::test::SharedMapping;
using mpp::test::shm_exists;

namespace {

std::string unique_name(const char* what) {
  static int n = 0;
  return "mpp-test-life-" + std::string(what) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(++n);
}

// This test process's segments in /dev/shm (other tests may run at the same time).
std::set<std::string> mine() {
  std::set<std::string> out;
  const std::string tag = "-" + std::to_string(getpid()) + "-";
  for (const auto& n : mpp::test::dev_shm()) {
    if (n.rfind("mpp-test-life-", 0) == 0 && n.find(tag) != std::string::npos) out.insert(n);
  }
  return out;
}

// Polls `cond` until it holds or `limit` has passed (a deadline, not a sleep).
template <class F>
bool within(std::chrono::milliseconds limit, F cond) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
}

// Process `pid` (started at `ticks`, if not 0) exists and is not a zombie: an orphan's
// exit status waits for whoever adopted it, which may be slow to reap it.
bool running(pid_t pid, std::uint64_t ticks = 0) {
  if (!mpp::detail::process_alive(pid, ticks)) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(f, line);
  auto close = line.rfind(')');
  return close == std::string::npos || line.size() < close + 3 || line[close + 2] != 'Z';
}

// The tracker, named by pid and start time (a recycled pid is not it).
struct Tracker {
  pid_t pid = 0;
  std::uint64_t ticks = 0;

  bool running() const { return ::running(pid, ticks); }

  std::string command() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
    std::string argv0;
    std::getline(f, argv0, '\0');
    return argv0;
  }

  // Whether it holds a mapping or a descriptor of /dev/shm/<name> (it must hold neither).
  bool holds(const std::string& name) const {
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (line.find("/dev/shm/" + name) != std::string::npos) return true;
    }
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    bool found = false;
    if (DIR* d = opendir(dir.c_str())) {
      while (auto* e = readdir(d)) {
        char target[4096];
        ssize_t n = readlink((dir + "/" + e->d_name).c_str(), target, sizeof target - 1);
        if (n > 0 && std::string(target, static_cast<std::size_t>(n)).find(name) != std::string::npos) {
          found = true;
        }
      }
      closedir(d);
    }
    return found;
  }
};

// What a creator or attacher child reports back through shared memory.
struct Report {
  std::atomic<pid_t> tracker{0};
  std::atomic<pid_t> grandchild{0};
};

// A blocking one-byte command channel from the test to a child.
struct Commands {
  int fds[2];
  Commands() { REQUIRE(pipe(fds) == 0); }
  ~Commands() {
    close(fds[0]);
    close(fds[1]);
  }
  void send(char c) { REQUIRE(write(fds[1], &c, 1) == 1); }
  char next() const {
    char c = 0;
    ssize_t n;
    do n = read(fds[0], &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? c : 'X';
  }
};

void default_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGABRT}) signal(sig, SIG_DFL);  // not the test runner's handlers
  rlimit no_core{0, 0};
  setrlimit(RLIMIT_CORE, &no_core);  // the abort of an uncaught exception leaves no core file
}

[[noreturn]] void fail_loudly() { throw std::runtime_error("an exception nobody catches"); }

enum class End { sigint_to_group, sigterm, sigkill, uncaught_exception, normal_exit };

const char* end_name(End e) {
  switch (e) {
    case End::sigint_to_group: return "SIGINT to the creator's process group (Ctrl-C)";
    case End::sigterm: return "SIGTERM";
    case End::sigkill: return "SIGKILL";
    case End::uncaught_exception: return "an uncaught exception";
    case End::normal_exit: return "a normal exit";
  }
  return "?";
}

// A creator child: makes Manager `name` with a dict in it, reports its tracker, then waits
// for a command: 'T' throws an exception nobody catches, 'X' returns (the Manager's
// destructor runs, then the process exits). Signals find it blocked in read().
std::unique_ptr<Child> start_creator(const std::string& name, SharedMapping<Report>& report,
                                     const Commands& commands, bool reexec = true,
                                     bool persist = false) {
  auto c = std::make_unique<Child>([&, name, reexec, persist](int ready) {
    default_signals();
    setpgid(0, 0);  // a process group of its own, as a shell gives a foreground job
    mpp::detail::set_segment_tracker_reexec(reexec);
    mpp::Manager m(name, 1 << 20);
    m.dict<std::string, int>("d").set("x", 1);
    if (persist) m.persist();
    report->tracker = mpp::detail::segment_tracker_pid();
    mpp::test::signal_ready(ready);
    if (commands.next() == 'T') {
      []() noexcept { fail_loudly(); }();  // std::terminate: no destructor runs
    }
  });
  REQUIRE(c->wait_ready());
  return c;
}

// An attacher child, forked from the test (not from the creator): attaches by name and
// checks the dict, then for each 'U' attaches again by name (so the name must still be in
// /dev/shm) and writes; 'X' returns.
std::unique_ptr<Child> start_attacher(const std::string& name, const Commands& commands) {
  auto c = std::make_unique<Child>([&, name](int ready) {
    default_signals();
    auto m = mpp::Manager::attach(name);
    auto d = m.dict<std::string, int>("d");
    if (d.at("x") != 1) _exit(3);
    mpp::test::signal_ready(ready);
    while (commands.next() == 'U') {
      auto again = mpp::Manager::attach(name);
      again.dict<std::string, int>("d").set("y", d.at("x") + 1);
      mpp::test::signal_ready(ready);
    }
  });
  REQUIRE(c->wait_ready());
  return c;
}

// Ends the creator as `end` says and checks that it ended that way.
void end_creator(Child& creator, Commands& commands, End end) {
  int expected = 0;
  switch (end) {
    case End::sigint_to_group:
      REQUIRE(kill(-creator.pid(), SIGINT) == 0);
      expected = -SIGINT;
      break;
    case End::sigterm:
      REQUIRE(kill(creator.pid(), SIGTERM) == 0);
      expected = -SIGTERM;
      break;
    case End::sigkill:
      REQUIRE(kill(creator.pid(), SIGKILL) == 0);
      expected = -SIGKILL;
      break;
    case End::uncaught_exception:
      commands.send('T');
      expected = -SIGABRT;
      break;
    case End::normal_exit:
      commands.send('X');
      break;
  }
  CHECK(creator.exit_code() == expected);
}

// While the attacher runs, over three of the tracker's 100 ms rounds, the segment stays,
// can be attached again by name and written; its tracker keeps running.
void check_attacher_keeps_it(const std::string& name, Child& attacher, Commands& commands,
                             const Tracker& tracker) {
  auto until = std::chrono::steady_clock::now() + 350ms;
  int rounds = 0;
  while (std::chrono::steady_clock::now() < until) {
    commands.send('U');
    REQUIRE(attacher.wait_ready());
    REQUIRE(shm_exists(name));
    ++rounds;
    std::this_thread::sleep_for(20ms);  // the observation window, not a synchronisation
  }
  CHECK(rounds >= 3);
  CHECK(tracker.running());
}

void check_gone(const std::string& name, const Tracker& tracker) {
  CHECK(within(1000ms, [&] { return !shm_exists(name); }));
  CHECK(within(1000ms, [&] { return !tracker.running(); }));
}

void run(End end, bool with_attacher, bool reexec = true, bool kill_attacher = false) {
  INFO("the creator ends by " << end_name(end) << (with_attacher ? ", an attacher running" : "")
                              << (reexec ? "" : ", tracker not re-executed"));
  auto name = unique_name("end");
  SharedMapping<Report> report;
  Commands to_creator, to_attacher;
  auto creator = start_creator(name, report, to_creator, reexec);
  Tracker tracker{report->tracker.load(), 0};
  REQUIRE(tracker.pid > 0);
  tracker.ticks = mpp::detail::process_start_ticks(tracker.pid);
  CHECK(tracker.pid != creator->pid());
  CHECK(tracker.running());
  CHECK(within(1000ms, [&] { return !tracker.holds(name); }));  // once it has shed the creator's
  // Re-executed, it is a fresh image of the program, not a copy of the creator's memory.
  if (reexec) {
    CHECK(within(1000ms, [&] { return tracker.command() == "mpp-segment-tracker"; }));
  } else {
    CHECK(tracker.command() != "mpp-segment-tracker");
  }
  CHECK(getsid(tracker.pid) != getsid(creator->pid()));  // Ctrl-C and hangups do not reach it
  REQUIRE(shm_exists(name));
  std::unique_ptr<Child> attacher;
  if (with_attacher) attacher = start_attacher(name, to_attacher);
  end_creator(*creator, to_creator, end);
  if (with_attacher) {
    check_attacher_keeps_it(name, *attacher, to_attacher, tracker);
    if (kill_attacher) {
      attacher->kill_and_reap();
    } else {
      to_attacher.send('X');
      CHECK(attacher->exit_code() == 0);
    }
  }
  check_gone(name, tracker);
  CHECK(mine().empty());
}

}  // namespace

TEST_CASE("SIGINT to the creator's group: the segment lives while attached, then is removed") {
  run(End::sigint_to_group, false);
  run(End::sigint_to_group, true);
}

TEST_CASE("SIGTERM to the creator: the segment lives while attached, then is removed") {
  run(End::sigterm, false);
  run(End::sigterm, true);
}

TEST_CASE("SIGKILL to the creator: the segment lives while attached, then is removed") {
  run(End::sigkill, false);
  run(End::sigkill, true);
  run(End::sigkill, true, true, /*kill_attacher=*/true);  // the last user is SIGKILLed too
}

TEST_CASE("an uncaught exception in the creator: the segment lives while attached, then is removed") {
  run(End::uncaught_exception, false);
  run(End::uncaught_exception, true);
}

TEST_CASE("a normal exit of the creator leaves the segment to a running attacher") {
  run(End::normal_exit, false);
  run(End::normal_exit, true);
}

TEST_CASE("a tracker that keeps running in the creator's fork (not re-executed) does the same") {
  run(End::sigkill, false, false);
  run(End::sigkill, true, false);
}

TEST_CASE("a creator that releases its Manager while an attacher maps it leaves it to the attacher") {
  auto name = unique_name("release");
  SharedMapping<Report> report;
  Commands to_creator, to_attacher;
  Child creator([&](int ready) {
    default_signals();
    {
      mpp::Manager m(name, 1 << 20);
      m.dict<std::string, int>("d").set("x", 1);
      report->tracker = mpp::detail::segment_tracker_pid();
      mpp::test::signal_ready(ready);
      to_creator.next();  // 'R': release
    }
    mpp::test::signal_ready(ready);
    to_creator.next();  // 'X': exit
  });
  REQUIRE(creator.wait_ready());
  Tracker tracker{report->tracker.load(), 0};
  tracker.ticks = mpp::detail::process_start_ticks(tracker.pid);
  auto attacher = start_attacher(name, to_attacher);
  to_creator.send('R');
  REQUIRE(creator.wait_ready());
  check_attacher_keeps_it(name, *attacher, to_attacher, tracker);
  to_attacher.send('X');
  CHECK(attacher->exit_code() == 0);
  CHECK(within(1000ms, [&] { return !shm_exists(name); }));  // its creator still runs
  CHECK(tracker.running());  // and keeps its tracker for the segments it may make next
  to_creator.send('X');
  CHECK(creator.exit_code() == 0);
  CHECK(within(1000ms, [&] { return !tracker.running(); }));
  CHECK(mine().empty());
}

TEST_CASE("a release with no other user removes the segment at once, as before") {
  auto name = unique_name("now");
  {
    mpp::Manager m(name, 1 << 20);
    REQUIRE(shm_exists(name));
  }
  CHECK_FALSE(shm_exists(name));  // synchronous: no wait for the tracker's round
}

TEST_CASE("a fork of the creator keeps the segment only while it maps it") {
  for (bool keeps_mapping : {false, true}) {
    INFO((keeps_mapping ? "the fork keeps its inherited mapping" : "the fork dropped its mapping"));
      auto name = unique_name("fork");
    SharedMapping<Report> report;
    Commands to_creator, to_grandchild;
    Child creator([&](int ready) {
      default_signals();
      auto m = std::make_unique<mpp::Manager>(name, 1 << 20);
      report->tracker = mpp::detail::segment_tracker_pid();
      pid_t g = fork();
      if (g == 0) {
        // A fork of the creator: it holds no copy of the tracker's socket, and is just one
        // more process that maps the segment (or not).
        if (!keeps_mapping) m.reset();
        mpp::test::signal_ready(ready);
        to_grandchild.next();
        _exit(0);
      }
      report->grandchild = g;
      to_creator.next();
    });
    REQUIRE(creator.wait_ready());
    Tracker tracker{report->tracker.load(), 0};
    tracker.ticks = mpp::detail::process_start_ticks(tracker.pid);
    REQUIRE(within(1000ms, [&] { return report->grandchild.load() > 0; }));
    pid_t grandchild = report->grandchild.load();
    struct Reaper {  // the grandchild is not ours to wait for: it must not outlive a failure
      pid_t pid;
      ~Reaper() { kill(pid, SIGKILL); }
    } reaper{grandchild};
    creator.kill_and_reap();
    if (keeps_mapping) {
      CHECK_FALSE(within(300ms, [&] { return !shm_exists(name); }));  // stays while mapped
      to_grandchild.send('X');
    }
    CHECK(within(1000ms, [&] { return !shm_exists(name); }));
    if (!keeps_mapping) {
      CHECK(running(grandchild));  // removed although the creator's fork still runs
      to_grandchild.send('X');
    }
    CHECK(within(1000ms, [&] { return !tracker.running(); }));
    CHECK(within(1000ms, [&] { return !running(grandchild); }));
    CHECK(mine().empty());
  }
}

TEST_CASE("persist() leaves the segment after its creator is killed, for mpp-inspect rm") {
  auto name = unique_name("persist");
  SharedMapping<Report> report;
  Commands to_creator;
  auto creator = start_creator(name, report, to_creator, true, /*persist=*/true);
  Tracker tracker{report->tracker.load(), 0};
  tracker.ticks = mpp::detail::process_start_ticks(tracker.pid);
  creator->kill_and_reap();
  CHECK(within(1000ms, [&] { return !tracker.running(); }));  // it let the segment go
  CHECK(shm_exists(name));
  auto m = mpp::Manager::attach(name);
  CHECK(m.dict<std::string, int>("d").at("x") == 1);
  CHECK(Segment::unlink(name));
  CHECK(mine().empty());
}

TEST_CASE("creators SIGKILLed at random moments of creating and releasing, 200 times: nothing is left") {
  constexpr int kKills = 200;
  SharedMapping<std::array<std::atomic<pid_t>, kKills>> trackers;
  std::mt19937 rng(std::random_device{}());
  const pid_t test_pid = getpid();
  for (int i = 0; i < kKills; ++i) {
    const bool reexec = i % 4 == 0;  // a re-executed tracker is the costlier start: 1 in 4
    // Even runs are killed around their tracker's start, odd ones in their loop of creates
    // and releases (they report ready once their first segment exists).
    const bool in_loop = i % 2 == 1;
    Child creator([&, i, reexec, in_loop](int ready) {
      mpp::detail::set_segment_tracker_reexec(reexec);
      if (!in_loop) mpp::test::signal_ready(ready);
      std::vector<std::shared_ptr<Segment>> held;  // some kept, some released
      for (int k = 0;; ++k) {
        held.push_back(Segment::create("mpp-test-life-crash-" + std::to_string(test_pid) + "-" +
                                           std::to_string(i) + "-" + std::to_string(k),
                                       1 << 17));
        (*trackers)[static_cast<std::size_t>(i)] = mpp::detail::segment_tracker_pid();
        if (held.size() > 3) held.erase(held.begin() + static_cast<long>(k % 3));
        if (in_loop && k == 0) mpp::test::signal_ready(ready);
      }
    });
    REQUIRE(creator.wait_ready());
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 4000));  // the kill's moment
    creator.kill_and_reap();
  }
  int started = 0;
  for (auto& t : *trackers) started += t.load() > 0;
  CHECK(started >= kKills / 2);
  CHECK(within(10'000ms, [&] { return mine().empty(); }));
  for (auto& t : *trackers) {
    pid_t pid = t.load();
    if (pid > 0) CHECK(within(5000ms, [&] { return !running(pid); }));
  }
}
