// mpp::subprocess: run/call/check_call/check_output and Popen, against the behaviour of
// Python's subprocess. Children are real programs (sh, cat, head, env); no test waits with a
// sleep: a child that must stay alive blocks reading a pipe the test holds.
#include "mpp/subprocess.hpp"

#include "support/child.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <thread>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace sp = mpp::subprocess;
using namespace std::chrono_literals;

namespace {

// Every test must leave no child of the test process behind, reaped or not.
void require_no_children() {
  int status;
  errno = 0;
  REQUIRE(::waitpid(-1, &status, WNOHANG) == -1);
  REQUIRE(errno == ECHILD);
}

// A temporary directory, removed with its contents.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mpp-subprocess-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { sp::call({"rm", "-rf", path}); }
  std::string file(const std::string& name, const std::string& content, mode_t mode) const {
    std::string p = path + "/" + name;
    std::ofstream(p) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }
};

std::string read_file(const std::string& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("run captures stdout, stderr and the returncode") {
  auto r = sp::run({"sh", "-c", "echo out; echo err >&2; exit 3"}, {.capture_output = true});
  CHECK(r.returncode == 3);
  CHECK(r.stdout == "out\n");
  CHECK(r.stderr == "err\n");
  CHECK(r.args == std::vector<std::string>{"sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK_THROWS_AS(r.check_returncode(), sp::CalledProcessError);

  auto plain = sp::run({"true"});
  CHECK(plain.returncode == 0);
  CHECK_FALSE(plain.stdout.has_value());
  CHECK_FALSE(plain.stderr.has_value());
  CHECK_NOTHROW(plain.check_returncode());
  require_no_children();
}

TEST_CASE("run feeds input and the child sees EOF after it") {
  auto r = sp::run({"cat"}, {.input = std::string("line 1\nline 2\n"), .stdout = sp::PIPE});
  CHECK(r.stdout == "line 1\nline 2\n");
  auto wc = sp::run({"wc", "-c"}, {.input = std::string(), .stdout = sp::PIPE});
  CHECK(wc.stdout == "0\n");
  require_no_children();
}

TEST_CASE("call, check_call and check_output") {
  CHECK(sp::call({"sh", "-c", "exit 7"}) == 7);
  CHECK(sp::check_call({"true"}) == 0);
  try {
    sp::check_call({"sh", "-c", "exit 5"});
    FAIL("check_call did not throw");
  } catch (const sp::CalledProcessError& e) {
    CHECK(e.returncode == 5);
    CHECK(e.cmd == std::vector<std::string>{"sh", "-c", "exit 5"});
    CHECK(contains(e.what(), "returned non-zero exit status 5"));
  }
  CHECK(sp::check_output({"echo", "hello"}) == "hello\n");
  try {
    sp::check_output({"sh", "-c", "echo partial; echo bad >&2; exit 2"}, {.stderr = sp::PIPE});
    FAIL("check_output did not throw");
  } catch (const sp::CalledProcessError& e) {
    CHECK(e.returncode == 2);
    CHECK(e.output == "partial\n");
    CHECK(e.stderr_output == "bad\n");
  }
  CHECK_THROWS_AS(sp::check_output({"true"}, {.stdout = sp::DEVNULL}), mpp::ValueError);
  require_no_children();
}

TEST_CASE("check=true throws CalledProcessError carrying the output") {
  try {
    sp::run({"sh", "-c", "echo o; echo e >&2; exit 4"}, {.capture_output = true, .check = true});
    FAIL("run did not throw");
  } catch (const sp::CalledProcessError& e) {
    CHECK(e.returncode == 4);
    CHECK(e.output == "o\n");
    CHECK(e.stderr_output == "e\n");
  }
  CHECK(sp::run({"true"}, {.check = true}).returncode == 0);
  require_no_children();
}

TEST_CASE("a program that does not exist is a FileNotFoundError in the parent, naming it") {
  try {
    sp::run({"mpp-no-such-program-anywhere", "arg"});
    FAIL("run did not throw");
  } catch (const mpp::FileNotFoundError& e) {
    CHECK(e.error_number() == ENOENT);
    CHECK(contains(e.what(), "mpp-no-such-program-anywhere"));
  }
  try {
    sp::Popen p({"/nonexistent/dir/prog"});
    FAIL("Popen did not throw");
  } catch (const mpp::FileNotFoundError& e) {
    CHECK(contains(e.what(), "/nonexistent/dir/prog"));
  }
  // PATH is the child's: a program on the parent's PATH is not found on an empty one.
  CHECK_THROWS_AS(sp::run({"sh", "-c", "true"}, {.env = sp::Environment{{"PATH", "/nonexistent"}}}),
                  mpp::FileNotFoundError);
  require_no_children();
}

TEST_CASE("a file that cannot be executed is a PermissionError naming it") {
  TempDir dir;
  std::string script = dir.file("not-executable", "#!/bin/sh\necho hi\n", 0644);
  try {
    sp::run({script});
    FAIL("run did not throw");
  } catch (const mpp::PermissionError& e) {
    CHECK(e.error_number() == EACCES);
    CHECK(contains(e.what(), script));
  }
  // Found through PATH, too.
  try {
    sp::run({"not-executable"}, {.env = sp::Environment{{"PATH", dir.path}}});
    FAIL("run did not throw");
  } catch (const mpp::PermissionError& e) {
    CHECK(contains(e.what(), "not-executable"));
  }
  // A directory is not a program either.
  CHECK_THROWS_AS(sp::run({dir.path}), mpp::PermissionError);
  // A file with the x bit but no valid format: an OSError (ENOEXEC), not a silent 127.
  std::string garbage = dir.file("garbage", "\x01\x02\x03 not a program\n", 0755);
  try {
    sp::run({garbage});
    FAIL("run did not throw");
  } catch (const mpp::OSError& e) {
    CHECK(e.error_number() == ENOEXEC);
    CHECK(contains(e.what(), garbage));
  }
  // An executable script in a directory named by PATH is found and run.
  dir.file("hello-script", "#!/bin/sh\necho hi from script\n", 0755);
  auto env = sp::environ_copy();
  env["PATH"] = dir.path + ":" + env["PATH"];
  CHECK(sp::check_output({"hello-script"}, {.env = env}) == "hi from script\n");
  require_no_children();
}

TEST_CASE("cwd sets the child's working directory, a missing one is named") {
  TempDir dir;
  CHECK(sp::check_output({"pwd"}, {.cwd = dir.path}) == dir.path + "\n");
  // A relative program path is relative to cwd, as in Python on POSIX.
  dir.file("local-prog", "#!/bin/sh\necho local\n", 0755);
  CHECK(sp::check_output({"./local-prog"}, {.cwd = dir.path}) == "local\n");
  try {
    sp::run({"pwd"}, {.cwd = dir.path + "/missing"});
    FAIL("run did not throw");
  } catch (const mpp::FileNotFoundError& e) {
    CHECK(contains(e.what(), dir.path + "/missing"));
  }
  require_no_children();
}

TEST_CASE("env replaces the child's environment") {
  auto out = sp::check_output({"/usr/bin/env"}, {.env = sp::Environment{{"FOO", "bar"}, {"EMPTY", ""}}});
  CHECK(out == "EMPTY=\nFOO=bar\n");
  CHECK(sp::check_output({"/usr/bin/env"}, {.env = sp::Environment{}}).empty());
  CHECK_THROWS_AS(sp::run({"true"}, {.env = sp::Environment{{"A=B", "c"}}}), mpp::ValueError);
  // Without env the child inherits the parent's.
  ::setenv("MPP_SUBPROCESS_TEST_VAR", "inherited", 1);
  CHECK(sp::check_output({"sh", "-c", "echo $MPP_SUBPROCESS_TEST_VAR"}) == "inherited\n");
  ::unsetenv("MPP_SUBPROCESS_TEST_VAR");
  require_no_children();
}

TEST_CASE("shell=true runs the command line with /bin/sh -c, without it there is no shell") {
  CHECK(sp::check_output("echo $((1 + 2)) | tr 3 x", {.shell = true}) == "x\n");
  CHECK(sp::check_output({"echo $0-$1", "a", "b"}, {.shell = true}) == "a-b\n");
  // Without a shell, metacharacters are plain arguments.
  CHECK(sp::check_output({"echo", "$HOME", "|", "*"}) == "$HOME | *\n");
  // A single string without shell is the program name.
  CHECK(sp::check_output("pwd", {.cwd = "/"}) == "/\n");
  CHECK_THROWS_AS(sp::run("echo hi"), mpp::FileNotFoundError);
  // executable replaces the program; args[0] stays the child's argv[0].
  CHECK(sp::check_output({"my-name", "-c", "echo $0"}, {.executable = "/bin/sh"}) == "my-name\n");
  require_no_children();
}

TEST_CASE("stderr=STDOUT merges stderr into stdout") {
  auto r = sp::run({"sh", "-c", "echo out; echo err >&2; echo out2"},
                   {.stdout = sp::PIPE, .stderr = sp::STDOUT});
  CHECK(r.stdout == "out\nerr\nout2\n");
  CHECK_FALSE(r.stderr.has_value());
  // Into an fd as well.
  TempDir dir;
  int fd = ::open((dir.path + "/both").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  sp::run({"sh", "-c", "echo a; echo b >&2"}, {.stdout = fd, .stderr = sp::STDOUT});
  ::close(fd);
  CHECK(read_file(dir.path + "/both") == "a\nb\n");
  CHECK_THROWS_AS(sp::Popen({"true"}, {.stdout = sp::STDOUT}), mpp::ValueError);
  CHECK_THROWS_AS(sp::Popen({"true"}, {.stdin = sp::STDOUT}), mpp::ValueError);
  require_no_children();
}

TEST_CASE("DEVNULL and file descriptors as stdin, stdout and stderr") {
  CHECK(sp::run({"cat"}, {.stdin = sp::DEVNULL, .stdout = sp::PIPE}).stdout == "");
  auto r = sp::run({"sh", "-c", "echo gone; echo gone too >&2; echo kept >&2"},
                   {.stdout = sp::DEVNULL, .stderr = sp::PIPE});
  CHECK_FALSE(r.stdout.has_value());
  CHECK(r.stderr == "gone too\nkept\n");

  TempDir dir;
  std::string in_path = dir.file("in", "from a file\n", 0600);
  int in = ::open(in_path.c_str(), O_RDONLY | O_CLOEXEC);
  int out = ::open((dir.path + "/out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  REQUIRE(in >= 0);
  REQUIRE(out >= 0);
  CHECK(sp::call({"cat"}, {.stdin = in, .stdout = out}) == 0);
  ::close(in);
  ::close(out);
  CHECK(read_file(dir.path + "/out") == "from a file\n");
  CHECK_THROWS_AS(sp::run({"true"}, {.stdout = 9999}), mpp::ValueError);
  require_no_children();
}

TEST_CASE("fds 1 and 2 given to the child swapped reach the right places") {
  // In a forked process whose fd 1 is pipe `one` and fd 2 is pipe `two`, the child gets
  // stdout = 2 and stderr = 1. Done naively (dup2(2, 1) then dup2(1, 2)) both would be `two`.
  int one[2], two[2];
  REQUIRE(::pipe(one) == 0);
  REQUIRE(::pipe(two) == 0);
  mpp::test::Child c([&](int) {
    if (::dup2(one[1], 1) < 0 || ::dup2(two[1], 2) < 0) _exit(2);
    for (int fd : {one[0], one[1], two[0], two[1]}) ::close(fd);
    sp::Popen p({"sh", "-c", "echo to-out; echo to-err >&2"}, {.stdout = 2, .stderr = 1});
    _exit(p.wait() == 0 ? 0 : 3);
  });
  ::close(one[1]);
  ::close(two[1]);
  CHECK(c.exit_code() == 0);
  char buf[32] = {};
  CHECK(::read(two[0], buf, sizeof buf - 1) == 7);
  CHECK(std::string(buf) == "to-out\n");
  std::fill(std::begin(buf), std::end(buf), '\0');
  CHECK(::read(one[0], buf, sizeof buf - 1) == 7);
  CHECK(std::string(buf) == "to-err\n");
  ::close(one[0]);
  ::close(two[0]);
  require_no_children();
}

TEST_CASE("children inherit only 0, 1, 2 and pass_fds") {
  int p[2];
  REQUIRE(::pipe(p) == 0);  // deliberately without O_CLOEXEC
  const std::string list = "ls /proc/$$/fd";
  auto fds_of = [](const std::string& out) {
    std::set<int> s;
    std::istringstream in(out);
    for (int fd; in >> fd;) s.insert(fd);
    return s;
  };
  auto closed = fds_of(sp::check_output({"sh", "-c", list}));
  CHECK(closed.count(p[0]) == 0);
  CHECK(closed.count(p[1]) == 0);
  CHECK(closed.count(0) == 1);
  auto passed = fds_of(sp::check_output({"sh", "-c", list}, {.pass_fds = {p[1]}}));
  CHECK(passed.count(p[0]) == 0);
  CHECK(passed.count(p[1]) == 1);
  auto all = fds_of(sp::check_output({"sh", "-c", list}, {.close_fds = false}));
  CHECK(all.count(p[0]) == 1);
  CHECK(all.count(p[1]) == 1);
  // A passed fd works in the child: it writes into the test's pipe.
  CHECK(sp::call({"sh", "-c", "echo through >&" + std::to_string(p[1])}, {.pass_fds = {p[1]}}) == 0);
  char buf[16] = {};
  CHECK(::read(p[0], buf, sizeof buf) == 8);
  CHECK(std::string(buf) == "through\n");
  // A passed fd far above the others: the closed gap below it is no error.
  int high = ::fcntl(p[1], F_DUPFD_CLOEXEC, 200);
  REQUIRE(high >= 200);
  auto gap = fds_of(sp::check_output({"sh", "-c", list}, {.pass_fds = {high}}));
  CHECK(gap.count(high) == 1);
  CHECK(gap.count(p[1]) == 0);
  ::close(high);
  CHECK_THROWS_AS(sp::run({"true"}, {.pass_fds = {9999}}), mpp::ValueError);
  ::close(p[0]);
  ::close(p[1]);
  require_no_children();
}

TEST_CASE("communicate moves 100 MiB in and 2 x 100 MiB out at once without deadlock") {
  constexpr std::size_t size = 100u << 20;
  // A pattern whose period (65521, a prime) is no multiple of any chunk or pipe size, so a
  // lost, repeated or reordered chunk shows.
  std::string block(65521, '\0');
  for (std::size_t i = 0; i < block.size(); ++i) block[i] = static_cast<char>((i * 7 + i / 251) % 256);
  std::string input;
  input.reserve(size);
  while (input.size() < size) input.append(block, 0, std::min(block.size(), size - input.size()));
  // stderr fills from a background job while cat echoes stdin to stdout: all three pipes are
  // full at once, and the child blocks on whichever the parent does not serve.
  sp::Popen p({"sh", "-c", "head -c " + std::to_string(size) + " /dev/zero >&2 & cat; wait"},
              {.stdin = sp::PIPE, .stdout = sp::PIPE, .stderr = sp::PIPE});
  auto [out, err] = p.communicate(input);
  CHECK(p.returncode() == 0);
  REQUIRE(out.has_value());
  REQUIRE(err.has_value());
  CHECK(out->size() == size);
  CHECK(*out == input);
  CHECK(err->size() == size);
  CHECK(err->find_first_not_of('\0') == std::string::npos);
  require_no_children();
}

TEST_CASE("a child that closes stdin early does not kill the parent with SIGPIPE") {
  std::string input(8u << 20, 'x');
  auto r = sp::run({"head", "-c", "10"}, {.input = input, .stdout = sp::PIPE});
  CHECK(r.returncode == 0);
  CHECK(r.stdout == std::string(10, 'x'));
  // Exits without reading at all.
  CHECK(sp::run({"true"}, {.input = input}).returncode == 0);
  // SIGPIPE is left unblocked and not pending.
  sigset_t mask, pending;
  pthread_sigmask(SIG_BLOCK, nullptr, &mask);
  sigpending(&pending);
  CHECK(sigismember(&mask, SIGPIPE) == 0);
  CHECK(sigismember(&pending, SIGPIPE) == 0);
  require_no_children();
}

TEST_CASE("run with a timeout kills and reaps the child and throws TimeoutExpired") {
  try {
    sp::run({"sleep", "30"}, {.capture_output = true, .timeout = 100ms});
    FAIL("run did not time out");
  } catch (const sp::TimeoutExpired& e) {
    CHECK(e.timeout == Approx(0.1));
    CHECK(e.cmd == std::vector<std::string>{"sleep", "30"});
    CHECK(e.output == "");
    CHECK(contains(e.what(), "timed out after 0.1 seconds"));
  }
  require_no_children();
  // Nothing to read: the timeout applies to the wait alone.
  CHECK_THROWS_AS(sp::call({"sleep", "30"}, {.timeout = 50ms}), sp::TimeoutExpired);
  require_no_children();
}

TEST_CASE("communicate with a timeout keeps its progress and can be called again") {
  int hold[2];
  REQUIRE(::pipe2(hold, O_CLOEXEC) == 0);  // the child's stdin; cat blocks until we close it
  sp::Popen p({"sh", "-c", "echo partial; echo e >&2; exec cat"},
              {.stdin = hold[0], .stdout = sp::PIPE, .stderr = sp::PIPE});
  ::close(hold[0]);
  std::string seen;
  int timeouts = 0;
  while (!contains(seen, "partial")) {
    try {
      p.communicate(std::nullopt, 20ms);
      FAIL("communicate returned while cat was still running");
    } catch (const sp::TimeoutExpired& e) {
      ++timeouts;
      REQUIRE(e.output.has_value());
      REQUIRE(e.stderr_output.has_value());
      seen = *e.output;
    }
  }
  CHECK(timeouts >= 1);
  CHECK_FALSE(p.poll().has_value());
  CHECK_THROWS_AS(p.communicate(std::string("late input")), mpp::ValueError);
  REQUIRE(::write(hold[1], "typed\n", 6) == 6);
  ::close(hold[1]);  // cat sees EOF and exits
  auto [out, err] = p.communicate();
  CHECK(out == "partial\ntyped\n");
  CHECK(err == "e\n");
  CHECK(p.returncode() == 0);
  require_no_children();
}

TEST_CASE("input left unwritten at a timeout is written by the next communicate") {
  int go[2];
  REQUIRE(::pipe2(go, O_CLOEXEC) == 0);
  // The child reads nothing from stdin until the test writes a line to `go`.
  sp::Popen p({"sh", "-c", "read x <&" + std::to_string(go[0]) + "; exec cat"},
              {.stdin = sp::PIPE, .stdout = sp::PIPE, .pass_fds = {go[0]}});
  ::close(go[0]);
  std::string input(4u << 20, '\0');
  for (std::size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>(i % 253);
  CHECK_THROWS_AS(p.communicate(input, 20ms), sp::TimeoutExpired);
  REQUIRE(::write(go[1], "go\n", 3) == 3);
  ::close(go[1]);
  auto [out, err] = p.communicate();
  CHECK(out->size() == input.size());
  CHECK(*out == input);
  CHECK(p.returncode() == 0);
  require_no_children();
}

TEST_CASE("Popen: pipes used directly, poll, wait with a timeout, signals") {
  sp::Popen p({"cat"}, {.stdin = sp::PIPE, .stdout = sp::PIPE});
  CHECK(p.pid() > 0);
  CHECK(p.stdin() >= 0);
  CHECK(p.stdout() >= 0);
  CHECK(p.stderr() == -1);
  REQUIRE(::write(p.stdin(), "ping\n", 5) == 5);
  char buf[8] = {};
  REQUIRE(::read(p.stdout(), buf, sizeof buf) == 5);
  CHECK(std::string(buf) == "ping\n");
  CHECK_FALSE(p.poll().has_value());
  CHECK_FALSE(p.returncode().has_value());
  CHECK_THROWS_AS(p.wait(30ms), sp::TimeoutExpired);
  p.close_stdin();
  CHECK(p.wait() == 0);
  CHECK(p.returncode() == 0);
  CHECK(p.poll() == 0);
  p.kill();  // already reaped: nothing happens
  require_no_children();

  sp::Popen t({"cat"}, {.stdin = sp::PIPE});
  t.terminate();
  CHECK(t.wait() == -SIGTERM);
  sp::Popen k({"cat"}, {.stdin = sp::PIPE});
  k.kill();
  CHECK(k.wait(10s) == -SIGKILL);
  sp::Popen u({"cat"}, {.stdin = sp::PIPE});
  u.send_signal(SIGUSR1);
  CHECK(u.wait() == -SIGUSR1);
  // A killed child's CalledProcessError says which signal.
  auto r = sp::run({"sh", "-c", "kill -9 $$"});
  CHECK(r.returncode == -SIGKILL);
  try {
    r.check_returncode();
    FAIL("no throw");
  } catch (const sp::CalledProcessError& e) {
    CHECK(contains(e.what(), "signal 9"));
  }
  require_no_children();
}

TEST_CASE("start_new_session puts the child in a session of its own") {
  auto sid = [](const std::string& stat) {
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string state;
    long ppid, pgrp, session;
    in >> state >> ppid >> pgrp >> session;
    return session;
  };
  auto same = sp::check_output({"sh", "-c", "cat /proc/$$/stat"});
  CHECK(sid(same) == ::getsid(0));
  sp::Popen p({"sh", "-c", "cat /proc/$$/stat"}, {.stdout = sp::PIPE, .start_new_session = true});
  auto [out, err] = p.communicate();
  CHECK(sid(*out) == p.pid());
  require_no_children();
}

TEST_CASE("bad arguments are ValueErrors and start no child") {
  CHECK_THROWS_AS(sp::Popen(std::vector<std::string>{}), mpp::ValueError);
  CHECK_THROWS_AS(sp::run({"cat"}, {.input = std::string("x"), .stdin = sp::DEVNULL}), mpp::ValueError);
  CHECK_THROWS_AS(sp::run({"cat"}, {.capture_output = true, .stdout = sp::PIPE}), mpp::ValueError);
  CHECK_THROWS_AS(sp::Popen({"cat"}, {.input = std::string("x")}), mpp::ValueError);
  CHECK_THROWS_AS(sp::Popen({"true"}, {.timeout = 1s}), mpp::ValueError);
  CHECK_THROWS_AS(sp::Popen({"true"}, {.check = true}), mpp::ValueError);
  sp::Popen p({"true"});
  CHECK_THROWS_AS(p.communicate(std::string("x")), mpp::ValueError);
  p.wait();
  require_no_children();
}

TEST_CASE("a Popen destroyed while its child runs leaves no zombie once the child exits") {
  // cat reads a pipe whose write end the test holds, so it is surely still running when
  // the Popen is destroyed (with Popen's own PIPE it may exit and be reaped first).
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_t pid;
  {
    sp::Popen p({"cat"}, {.stdin = fds[0]});
    pid = p.pid();
  }
  ::close(fds[0]);
  ::close(fds[1]);  // now cat sees EOF and exits
  siginfo_t info{};
  // Wait for the exit without reaping, so that the reaping is left to mpp.
  REQUIRE(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
  sp::run({"true"});  // a new Popen reaps the abandoned child
  int status;
  CHECK(::waitpid(pid, &status, WNOHANG) == -1);
  require_no_children();
}

TEST_CASE("a moved Popen owns the child") {
  sp::Popen a({"cat"}, {.stdin = sp::PIPE, .stdout = sp::PIPE});
  sp::Popen b(std::move(a));
  CHECK(a.pid() == -1);
  auto [out, err] = b.communicate(std::string("moved\n"));
  CHECK(out == "moved\n");
  sp::Popen c({"true"});
  c.wait();  // else the assignment abandons a running child (see the test above)
  c = std::move(b);
  CHECK(c.returncode() == 0);
  require_no_children();
}

TEST_CASE("children start with SIGPIPE at its default even if the parent ignores it") {
  struct sigaction ign {}, old{};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  REQUIRE(::sigaction(SIGPIPE, &ign, &old) == 0);
  auto status = sp::check_output({"sh", "-c", "grep SigIgn /proc/$$/status"});
  ::sigaction(SIGPIPE, &old, nullptr);
  // SigIgn is a hex mask; bit (SIGPIPE - 1) set means ignored.
  unsigned long long mask = std::stoull(status.substr(status.find(':') + 1), nullptr, 16);
  CHECK((mask & (1ull << (SIGPIPE - 1))) == 0);
  require_no_children();
}

TEST_CASE("no fd leaks in the parent, on success and on every error path, from two threads") {
  auto count_fds = [] {
    std::size_t n = 0;
    for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
    return n;
  };
  std::size_t before = count_fds();
  auto work = [](int id) {
    for (int i = 0; i < 20; ++i) {
      auto r = sp::run({"sh", "-c", "cat; echo " + std::to_string(id) + " >&2"},
                       {.input = std::string("in"), .capture_output = true});
      if (r.stdout != "in" || r.stderr != std::to_string(id) + "\n") throw std::runtime_error("bad output");
      try {
        sp::run({"mpp-no-such-program-anywhere"}, {.capture_output = true});
      } catch (const mpp::FileNotFoundError&) {
      }
      try {
        sp::run({"true"}, {.stdin = sp::DEVNULL, .stdout = sp::PIPE, .cwd = "/nonexistent"});
      } catch (const mpp::FileNotFoundError&) {
      }
      try {
        sp::run({"true"}, {.stdout = sp::PIPE, .pass_fds = {9999}});
      } catch (const mpp::ValueError&) {
      }
    }
  };
  std::exception_ptr failure;
  std::thread other([&] {
    try {
      work(2);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  work(1);
  other.join();
  if (failure) std::rethrow_exception(failure);
  CHECK(count_fds() == before);
  require_no_children();
}
