#include "mpp/pool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <list>
#include <map>
#include <numeric>
#include <ranges>
#include <sstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpp/detail/segment_format.hpp"
#include "mpp/errors.hpp"
#include "support/child.hpp"

using namespace std::chrono_literals;

namespace {

int square(int x) { return x * x; }
std::string shout(std::string s, int n) { return s + std::string(static_cast<std::size_t>(n), '!'); }
int fail_on_7(int x) {
  if (x == 7) throw std::domain_error("seven is not allowed");
  return x;
}
void die_with_sigkill() { ::kill(::getpid(), SIGKILL); }
int my_pid(int) { return ::getpid(); }

// This process's children that exist now (from /proc/self/task/*/children).
std::set<pid_t> children_now() {
  std::set<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (!d) return out;
  while (auto* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + e->d_name + "/children";
    if (FILE* f = fopen(path.c_str(), "r")) {
      int pid;
      while (fscanf(f, "%d", &pid) == 1) out.insert(pid);
      fclose(f);
    }
  }
  closedir(d);
  return out;
}

// The mpp segments in /dev/shm made by one of `pids` (their header's creator_pid): other
// test programs running beside this one (ctest -j) make and remove their own, which a
// snapshot of the whole directory would take for ours.
std::set<std::string> segments_made_by(const std::set<pid_t>& pids) {
  std::set<std::string> out;
  if (DIR* d = opendir("/dev/shm")) {
    while (auto* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) continue;
      unsigned char head[offsetof(mpp::detail::SegmentHeader, creator_pid) + sizeof(std::int32_t)];
      const bool read_all = pread(fd, head, sizeof head, 0) == static_cast<ssize_t>(sizeof head);
      close(fd);
      std::uint64_t magic = 0;
      std::int32_t creator = 0;
      std::memcpy(&magic, head + offsetof(mpp::detail::SegmentHeader, magic), sizeof magic);
      std::memcpy(&creator, head + offsetof(mpp::detail::SegmentHeader, creator_pid), sizeof creator);
      if (read_all && magic == mpp::detail::SEGMENT_MAGIC && pids.count(creator)) out.insert(e->d_name);
    }
    closedir(d);
  }
  return out;
}

}  // namespace

TEST_CASE("apply runs a function pointer or a capturing lambda made after the fork") {
  mpp::Pool pool(2);
  CHECK(pool.apply(square, 7) == 49);
  CHECK(pool.apply(shout, "hey", 3) == "hey!!!");
  int base = 1000;  // made after the workers were forked; travels as the lambda's bytes
  auto add = [base](int x) { return base + x; };
  CHECK(pool.apply(add, 5) == 1005);
  CHECK(pool.apply(my_pid, 0) != getpid());
  pool.close();
  pool.join();
}

TEST_CASE("map over 100k items is correct and in order, starmap, empty input") {
  mpp::Pool pool(2);
  std::vector<int> xs(100000);
  std::iota(xs.begin(), xs.end(), 0);
  auto ys = pool.map([](int x) { return x * 3 + 1; }, xs);
  REQUIRE(ys.size() == xs.size());
  bool ok = true;
  for (std::size_t i = 0; i < xs.size(); ++i) ok = ok && ys[i] == xs[i] * 3 + 1;
  CHECK(ok);
  auto zs = pool.map([](int x) { return static_cast<long long>(x) * x; }, xs, 7);  // an odd chunk size
  CHECK(zs.size() == xs.size());
  CHECK(zs[99999] == 99999LL * 99999LL);
  std::vector<std::string> words{"a", "bb", "ccc"};
  CHECK(pool.map([](const std::string& s) { return s.size(); }, words) == std::vector<std::size_t>{1, 2, 3});
  std::vector<std::pair<std::string, int>> pairs{{"x", 1}, {"y", 2}};
  CHECK(pool.starmap(shout, pairs) == std::vector<std::string>{"x!", "y!!"});
  CHECK(pool.map(square, std::vector<int>{}).empty());
}

TEST_CASE("imap yields in order, imap_unordered yields each exactly once") {
  mpp::Pool pool(3);
  std::vector<int> xs(2000);
  std::iota(xs.begin(), xs.end(), 0);
  std::vector<int> ordered;
  for (int v : pool.imap(square, xs, 13)) ordered.push_back(v);
  REQUIRE(ordered.size() == xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) REQUIRE(ordered[i] == xs[i] * xs[i]);
  std::multiset<int> seen;
  auto it = pool.imap_unordered([](int x) { return x; }, xs);
  while (auto v = it.next(30s)) seen.insert(*v);
  CHECK(seen.size() == xs.size());
  CHECK(std::set<int>(seen.begin(), seen.end()).size() == xs.size());
}

TEST_CASE("imap reads its input lazily: an endless range, a bounded look-ahead, a single-pass input") {
  mpp::Pool pool(2);
  std::size_t read = 0;
  auto endless = std::views::iota(0) | std::views::transform([&read](int x) {
                   ++read;
                   return x;
                 });
  auto it = pool.imap(square, endless);
  for (int i = 0; i < 10000; ++i) REQUIRE(it.next(30s) == i * i);
  CHECK(read >= 10000);
  CHECK(read < 10000 + 8192);  // the look-ahead is bounded (4096 items here)
  std::istringstream in("1 2 3 4 5");
  auto un = pool.imap_unordered(square, std::views::istream<int>(in));
  std::multiset<int> got;
  while (auto v = un.next(30s)) got.insert(*v);
  CHECK(got == std::multiset<int>{1, 4, 9, 16, 25});
}

TEST_CASE("an exception in a task comes back as RemoteError, and the pool stays usable") {
  mpp::Pool pool(2);
  try {
    pool.apply(fail_on_7, 7);
    FAIL("no exception");
  } catch (const mpp::RemoteError& e) {
    CHECK(e.type_name() == "std::domain_error");
    CHECK(e.message() == "seven is not allowed");
  }
  std::vector<int> xs{1, 2, 7, 4};
  CHECK_THROWS_AS(pool.map(fail_on_7, xs, 1), mpp::RemoteError);
  auto it = pool.imap(fail_on_7, xs);
  CHECK(it.next() == 1);
  CHECK(it.next() == 2);
  CHECK_THROWS_AS(it.next(), mpp::RemoteError);
  CHECK(it.next() == 4);
  CHECK_FALSE(it.next());
  auto r = pool.apply_async(fail_on_7, 7);
  r.wait();
  CHECK(r.ready());
  CHECK_FALSE(r.successful());
  CHECK(pool.apply(square, 3) == 9);
}

TEST_CASE("get(timeout) throws TimeoutError, wait(timeout) and ready report") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  mpp::Pool pool(1);  // after the pipe: the workers inherit it
  // The task blocks until the test writes to the pipe.
  int rfd = fds[0];
  auto blocker = [rfd](int) {
    char c;
    return static_cast<int>(read(rfd, &c, 1));
  };
  auto r = pool.apply_async(blocker, 0);
  CHECK_THROWS_AS(r.get(10ms), mpp::TimeoutError);
  CHECK_FALSE(r.wait(1ms));
  CHECK_FALSE(r.ready());
  CHECK_THROWS_AS(r.successful(), mpp::ValueError);
  REQUIRE(write(fds[1], "x", 1) == 1);
  CHECK(r.get(30s) == 1);
  CHECK(r.successful());
  close(fds[0]);
  close(fds[1]);
}

TEST_CASE("each callback runs once, in the parent, on the result thread") {
  std::atomic<int> calls{0}, errors{0}, wrong_process{0};
  std::mutex m;
  std::multiset<int> values;
  const pid_t parent = getpid();
  {
    mpp::Pool pool(2);
    for (int i = 0; i < 200; ++i) {
      pool.apply_async(square, i, mpp::callback([&](const int& v) {
                         if (getpid() != parent) ++wrong_process;
                         std::lock_guard lock(m);
                         values.insert(v);
                         ++calls;
                       }),
                       mpp::error_callback([&](const mpp::Error&) { ++errors; }));
    }
    pool.apply_async(fail_on_7, 7, mpp::error_callback([&](const mpp::Error& e) {
                       if (getpid() != parent) ++wrong_process;
                       if (dynamic_cast<const mpp::RemoteError*>(&e)) ++errors;
                     }));
    std::atomic<int> map_done{0};
    std::vector<int> xs{1, 2, 3};
    pool.map_async(square, xs, mpp::callback([&](const std::vector<int>& v) {
                     if (v == std::vector<int>{1, 4, 9}) ++map_done;
                   }));
    pool.close();
    pool.join();  // returns after every callback ran
    CHECK(map_done == 1);
  }
  CHECK(calls == 200);
  CHECK(errors == 1);
  CHECK(wrong_process == 0);
  std::multiset<int> expect;
  for (int i = 0; i < 200; ++i) expect.insert(i * i);
  CHECK(values == expect);
}

TEST_CASE("a task that SIGKILLs its worker fails with WorkerLost, 1000 others complete") {
  mpp::Pool pool(2);
  std::vector<mpp::AsyncResult<int>> rs;
  for (int i = 0; i < 500; ++i) rs.push_back(pool.apply_async(square, i));
  auto killer = pool.apply_async(die_with_sigkill);
  for (int i = 500; i < 1000; ++i) rs.push_back(pool.apply_async(square, i));
  try {
    killer.get(30s);
    FAIL("no exception");
  } catch (const mpp::WorkerLost& e) {
    CHECK_THAT(e.what(), Catch::Contains("signal 9") && Catch::Contains("SIGKILL") && Catch::Contains("pid"));
  }
  for (int i = 0; i < 1000; ++i) REQUIRE(rs[static_cast<std::size_t>(i)].get(30s) == i * i);
  // Again, to see that the replacement works and more deaths are handled.
  for (int round = 0; round < 5; ++round) {
    CHECK_THROWS_AS(pool.apply(die_with_sigkill), mpp::WorkerLost);
    CHECK(pool.apply(square, round) == round * round);
  }
  auto aborter = [](int) -> int {
    signal(SIGABRT, SIG_DFL);  // Catch's handler, inherited by the fork, would report
    std::abort();
  };
  CHECK_THROWS_WITH(pool.apply(aborter, 0), Catch::Contains("SIGABRT"));
  CHECK(pool.map(square, std::vector<int>{1, 2, 3}) == std::vector<int>{1, 4, 9});
}

TEST_CASE("a worker killed in the middle of a batch: that task fails, the rest of its batch runs exactly once") {
  int log[2], gate[2];
  REQUIRE(pipe(log) == 0);
  REQUIRE(pipe(gate) == 0);
  REQUIRE(fcntl(log[0], F_SETFL, O_NONBLOCK) == 0);
  {
    mpp::Pool pool(1);  // after the pipes: the worker inherits them
    // Tiny tasks first: the pool learns that tasks are short and sends them in batches.
    std::vector<mpp::AsyncResult<int>> warm;
    for (int i = 0; i < 2000; ++i) warm.push_back(pool.apply_async(square, i));
    for (auto& r : warm) r.get();
    // Hold the worker while the next tasks pile up in the backlog, so that they leave in
    // batches of hundreds, the killer among them.
    int gfd = gate[0];
    auto gate_task = [gfd](int) {
      char c;
      return static_cast<int>(read(gfd, &c, 1));
    };
    auto held = pool.apply_async(gate_task, 0);
    constexpr int kTasks = 1001, kKiller = 500;
    int lfd = log[1];
    auto logged = [lfd](int i) {
      if (write(lfd, &i, sizeof i) != static_cast<ssize_t>(sizeof i)) return -1;  // < PIPE_BUF: atomic
      if (i == kKiller) kill(getpid(), SIGKILL);
      return i;
    };
    std::vector<mpp::AsyncResult<int>> rs;
    for (int i = 0; i < kTasks; ++i) rs.push_back(pool.apply_async(logged, i));
    REQUIRE(write(gate[1], "x", 1) == 1);
    CHECK(held.get(30s) == 1);
    for (int i = 0; i < kTasks; ++i) {
      if (i == kKiller) {
        CHECK_THROWS_WITH(rs[static_cast<std::size_t>(i)].get(30s), Catch::Contains("SIGKILL"));
      } else {
        REQUIRE(rs[static_cast<std::size_t>(i)].get(30s) == i);
      }
    }
  }
  std::vector<int> runs(1001, 0);
  int v;
  while (read(log[0], &v, sizeof v) == static_cast<ssize_t>(sizeof v)) {
    REQUIRE(v >= 0);
    REQUIRE(v < 1001);
    ++runs[static_cast<std::size_t>(v)];
  }
  int not_once = 0;
  for (int n : runs) not_once += n != 1;
  CHECK(not_once == 0);
  for (int fd : {log[0], log[1], gate[0], gate[1]}) close(fd);
}

TEST_CASE("maxtasksperchild replaces workers, initializer runs in each worker") {
  mpp::PoolOptions opt;
  static int initialized = 0;  // the worker's copy is set by the initializer
  opt.initializer = [] { initialized = 42; };
  opt.maxtasksperchild = 3;
  mpp::Pool pool(2, opt);
  std::set<int> pids;
  for (int i = 0; i < 30; ++i) pids.insert(pool.apply(my_pid, i));
  CHECK(pids.size() >= 10);  // 30 tasks, at most 3 per worker
  CHECK(pool.apply([](int) { return initialized; }, 0) == 42);
  CHECK(initialized == 0);  // not in the parent
  // Many at once: they travel in batches longer than a worker's remaining tasks, and what a
  // retiring worker did not start runs elsewhere, once.
  std::vector<mpp::AsyncResult<int>> rs;
  for (int i = 0; i < 150; ++i) rs.push_back(pool.apply_async(square, i));
  for (int i = 0; i < 150; ++i) REQUIRE(rs[static_cast<std::size_t>(i)].get(30s) == i * i);
  std::vector<mpp::AsyncResult<int>> ps;
  for (int i = 0; i < 60; ++i) ps.push_back(pool.apply_async(my_pid, i));
  std::map<int, int> per_pid;
  for (auto& r : ps) ++per_pid[r.get(30s)];
  for (auto& [pid, n] : per_pid) CHECK(n <= 3);
}

TEST_CASE("an initializer that throws breaks the pool with a clear error") {
  mpp::PoolOptions opt;
  opt.initializer = [] { throw std::runtime_error("no database"); };
  mpp::Pool pool(1, opt);
  // The pool may break before or after this task is submitted: either way it fails so.
  auto submit_and_get = [&] { return pool.apply_async(square, 2).get(30s); };
  CHECK_THROWS_WITH(submit_and_get(), Catch::Contains("initializer") && Catch::Contains("no database"));
  CHECK_THROWS_AS(pool.apply_async(square, 3), mpp::BrokenPool);
}

TEST_CASE("terminate with tasks in flight fails them with BrokenPool, leaves no child, no segment") {
  auto children_before = children_now();
  std::set<pid_t> pool_pids = {getpid()};  // this process and the pool's workers
  std::vector<mpp::AsyncResult<int>> rs;
  {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    mpp::Pool pool(2);  // after the pipe: the workers inherit it
    int rfd = fds[0];
    auto blocker = [rfd](int) {
      char c;
      return static_cast<int>(read(rfd, &c, 1));
    };
    for (int i = 0; i < 100; ++i) rs.push_back(pool.apply_async(blocker, i));
    CHECK(children_now().size() > children_before.size());
    for (pid_t p : children_now()) pool_pids.insert(p);
    pool.terminate();
    close(fds[0]);
    close(fds[1]);
    CHECK_THROWS_AS(pool.apply_async(square, 1), mpp::BrokenPool);
  }
  for (auto& r : rs) CHECK_THROWS_AS(r.get(30s), mpp::BrokenPool);
  CHECK(children_now() == children_before);
  CHECK(segments_made_by(pool_pids).empty());
}

TEST_CASE("close then join finishes queued tasks, misuse is reported") {
  mpp::Pool pool(2);
  CHECK_THROWS_AS(pool.join(), mpp::ValueError);  // not closed yet
  std::vector<mpp::AsyncResult<int>> rs;
  for (int i = 0; i < 300; ++i) rs.push_back(pool.apply_async(square, i));
  pool.close();
  CHECK_THROWS_WITH(pool.apply_async(square, 1), Catch::Contains("closed"));
  pool.join();
  for (int i = 0; i < 300; ++i) CHECK(rs[static_cast<std::size_t>(i)].ready());
  CHECK(rs[299].get() == 299 * 299);
  CHECK_THROWS_AS(mpp::Pool(-1), mpp::ValueError);
}

TEST_CASE("the destructor terminates: no child is left behind") {
  auto before = children_now();
  {
    mpp::Pool pool(3);
    CHECK(pool.apply(square, 2) == 4);
  }
  CHECK(children_now() == before);
}
