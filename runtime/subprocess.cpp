// mpp::subprocess — posix_spawn to start children, poll(2) over the pipes for communicate,
// a pidfd for timed waits. Why not Boost.Process v2 (Boost 1.81): docs/design/subprocess.md.
#include "mpp/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <utility>

#include "mpp/detail/os/child.hpp"

extern char** environ;

namespace mpp::subprocess {
namespace {

using Clock = std::chrono::steady_clock;

// Every descriptor Popen's constructor opens is owned, so that an early throw closes it.
using mpp::detail::os::Fd;

// Children whose Popen was destroyed while they ran (Python's subprocess._active): reaped
// without blocking whenever a new Popen is made. Never destroyed, so that a Popen destroyed
// during static destruction can still use it; its lock is held across fork and the child
// starts with an empty list (the parent's children are not the child's).
struct Active {
  std::mutex m;
  std::vector<pid_t> pids;
};

// The fork handlers use this pointer, not active(): a fork while another thread is still
// inside active()'s first call must not wait for that call's static initialisation.
Active* g_active = nullptr;

Active& active() {
  static Active* a = [] {
    g_active = new Active;
    pthread_atfork([] { g_active->m.lock(); }, [] { g_active->m.unlock(); },
                   [] {
                     g_active->pids.clear();
                     g_active->m.unlock();
                   });
    return g_active;
  }();
  return *a;
}

void cleanup_active() {
  Active& a = active();
  std::lock_guard<std::mutex> lock(a.m);
  std::erase_if(a.pids, [](pid_t pid) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD);
  });
}

int decode_status(int status) {
  return WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

// The first regular, executable file named `name` in the directories of `path`, checked
// relative to the child's working directory `dir_fd`. Throws FileNotFoundError (nothing found)
// or PermissionError (found, not executable), as execvp(3) decides between them.
std::string search_path(const std::string& name, const std::string& path, int dir_fd) {
  bool saw_eacces = false;
  std::size_t start = 0;
  while (true) {
    std::size_t end = path.find(':', start);
    std::string dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    struct stat st;
    if (::fstatat(dir_fd, candidate.c_str(), &st, 0) == 0 && S_ISREG(st.st_mode)) {
      if (::faccessat(dir_fd, candidate.c_str(), X_OK, AT_EACCESS) == 0) return candidate;
      saw_eacces = true;
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
  throw_os_error(saw_eacces ? EACCES : ENOENT,
                 "cannot run " + quote(name) + " (looked for it in PATH=" + path + ")");
}

// posix_spawn's attribute and file-action objects, destroyed on every path out.
struct SpawnState {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnState() {
    if (int e = posix_spawn_file_actions_init(&actions)) throw_os_error(e, "posix_spawn_file_actions_init");
    if (int e = posix_spawnattr_init(&attr)) {
      posix_spawn_file_actions_destroy(&actions);
      throw_os_error(e, "posix_spawnattr_init");
    }
  }
  ~SpawnState() {
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
  }
  void check(int e, const char* what) {
    if (e) throw_os_error(e, what);
  }
};

// Blocks SIGPIPE in this thread while communicate() writes, so that a child that closes its
// stdin early gives EPIPE instead of killing the parent (CPython ignores SIGPIPE process-wide
// for the same reason; a library must not change the process's dispositions). A SIGPIPE our
// own write raised is consumed before the mask is restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  void saw_epipe() { epipe_ = true; }
  ~SigpipeBlock() {
    if (epipe_ && !was_pending_) {
      timespec zero{};
      while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_set_;
  sigset_t old_;
  bool was_pending_ = false;
  bool epipe_ = false;
};

std::optional<Clock::time_point> deadline_of(const Timeout& t) {
  if (!t) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(*t);
}

// Milliseconds for poll(2) until `deadline` (-1: none), rounded up so that it never spins.
int poll_ms(const std::optional<Clock::time_point>& deadline) {
  if (!deadline) return -1;
  auto left = std::chrono::duration<double, std::milli>(*deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<double>(std::ceil(left), INT_MAX));
}

bool expired(const std::optional<Clock::time_point>& deadline) {
  return deadline && Clock::now() >= *deadline;
}

double seconds(const Timeout& t) { return t ? t->count() : 0.0; }


}  // namespace

Environment environ_copy() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (!eq) continue;
    env.emplace(std::string(*e, static_cast<std::size_t>(eq - *e)), std::string(eq + 1));
  }
  return env;
}

void CompletedProcess::check_returncode() const {
  if (returncode != 0) throw CalledProcessError(returncode, args, stdout, stderr);
}

// ---------------------------------------------------------------------------------------------
// Popen

namespace {

// Popen's constructor, step by step. Everything that can fail with a clear message is
// checked in the parent, before the spawn.

void check_popen_options(const std::vector<std::string>& args, Options& options) {
  if (args.empty()) throw ValueError("Popen: args is empty; give at least the program to run");
  if (options.stdin.kind() == Redirect::Kind::stdout_ || options.stdout.kind() == Redirect::Kind::stdout_)
    throw ValueError("Popen: STDOUT is only meaningful for stderr");
  if (options.input || options.capture_output || options.timeout || options.check)
    throw ValueError("Popen: input, capture_output, timeout and check are run()'s options; give "
                     "input and timeout to communicate() or wait()");
  if (!options.pass_fds.empty()) options.close_fds = true;  // as Python does
}

// The child's argv, and the program that is executed (not yet looked up in PATH).
struct ChildProgram {
  std::vector<std::string> argv;
  std::string program;
};

ChildProgram child_program(const std::vector<std::string>& args, const Options& options) {
  ChildProgram c{args, {}};
  if (options.shell) c.argv.insert(c.argv.begin(), {"/bin/sh", "-c"});
  c.program = c.argv[0];
  if (options.executable) {
    if (options.shell) c.argv[0] = *options.executable;
    c.program = *options.executable;
  }
  return c;
}

// The child's working directory, opened (none: the parent's). Throws OSError when it cannot
// be entered.
Fd open_cwd(const Options& options, const std::string& program) {
  Fd cwd_fd;
  if (options.cwd) {
    cwd_fd = Fd(::open(options.cwd->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!cwd_fd)
      throw_os_error(errno, "cannot use " + quote(*options.cwd) + " as the working directory of " +
                                quote(program));
    if (::faccessat(cwd_fd.get(), ".", X_OK, AT_EACCESS) != 0)
      throw_os_error(errno, "cannot use " + quote(*options.cwd) + " as the working directory of " +
                                quote(program));
  }
  return cwd_fd;
}

// The child's environment: options.env as "k=v" strings, or the parent's environ.
class ChildEnvironment {
 public:
  explicit ChildEnvironment(const Options& options) {
    if (!options.env) return;
    for (const auto& [k, v] : *options.env) {
      if (k.empty() || k.find('=') != std::string::npos)
        throw ValueError("Popen: illegal environment variable name " + quote(k));
      strings_.push_back(k + "=" + v);
    }
    for (auto& s : strings_) pointers_.push_back(s.data());
    pointers_.push_back(nullptr);
  }
  ChildEnvironment(const ChildEnvironment&) = delete;
  ChildEnvironment& operator=(const ChildEnvironment&) = delete;
  char** envp() { return pointers_.empty() ? environ : pointers_.data(); }

 private:
  std::vector<std::string> strings_;
  std::vector<char*> pointers_;
};

// The path of `program`: as it is when it holds a '/', else found in the child's PATH (the
// one of options.env, else the parent's) as execvp(3) would, relative to the child's working
// directory.
std::string resolve_program(const std::string& program, const Options& options, const Fd& cwd_fd) {
  if (program.find('/') != std::string::npos) return program;
  std::string path = "/bin:/usr/bin";  // Python's os.defpath
  if (options.env) {
    auto it = options.env->find("PATH");
    if (it != options.env->end()) path = it->second;
  } else if (const char* p = std::getenv("PATH")) {
    path = p;
  }
  return search_path(program, path, cwd_fd ? cwd_fd.get() : AT_FDCWD);
}

// The child's fds 0, 1, 2: `sources[i]` is what becomes fd i (-1: inherited as is).
struct StdStreams {
  Fd parent_end[3];        // the parent's ends of the PIPEs
  std::vector<Fd> owned;   // child ends and temporaries, closed in the parent after the spawn
  int sources[3] = {-1, -1, -1};
};

StdStreams redirect_std_streams(const Options& options) {
  StdStreams st;
  int devnull = -1;
  const Redirect* redirects[3] = {&options.stdin, &options.stdout, &options.stderr};
  for (int i = 0; i < 3; ++i) {
    const Redirect& r = *redirects[i];
    switch (r.kind()) {
      case Redirect::Kind::inherit:
        break;
      case Redirect::Kind::pipe: {
        auto [read_end, write_end] = mpp::detail::os::make_pipe("Popen");
        st.sources[i] = i == 0 ? read_end.get() : write_end.get();
        st.parent_end[i] = i == 0 ? std::move(write_end) : std::move(read_end);
        st.owned.push_back(i == 0 ? std::move(read_end) : std::move(write_end));
        break;
      }
      case Redirect::Kind::devnull:
        if (devnull < 0) {
          devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
          if (devnull < 0) throw_os_error(errno, "Popen: cannot open /dev/null");
          st.owned.emplace_back(devnull);
        }
        st.sources[i] = devnull;
        break;
      case Redirect::Kind::stdout_:
        st.sources[i] = st.sources[1] >= 0 ? st.sources[1] : STDOUT_FILENO;
        break;
      case Redirect::Kind::fd:
        if (r.fd() < 0 || ::fcntl(r.fd(), F_GETFD) < 0)
          throw ValueError("Popen: " + std::to_string(r.fd()) + " given for " +
                           (i == 0 ? "stdin" : i == 1 ? "stdout" : "stderr") +
                           " is not an open file descriptor");
        st.sources[i] = r.fd();
        break;
    }
  }
  // A source that is itself one of 0..2 (but not its own target) would be overwritten by an
  // earlier dup2 in the child: give it a number above 2 first, as CPython's _posixsubprocess does.
  for (int i = 0; i < 3; ++i) {
    if (st.sources[i] >= 0 && st.sources[i] <= 2 && st.sources[i] != i) {
      int moved = ::fcntl(st.sources[i], F_DUPFD_CLOEXEC, 3);
      if (moved < 0) throw_os_error(errno, "Popen: fcntl(F_DUPFD_CLOEXEC)");
      st.owned.emplace_back(moved);
      st.sources[i] = moved;
    }
  }
  return st;
}

// What the child does between fork and exec: enter its working directory, take its fds 0..2,
// close the rest unless kept, reset SIGPIPE and SIGXFSZ, start a session if asked.
void plan_child_setup(SpawnState& s, const Options& options, const Fd& cwd_fd, const StdStreams& st) {
  if (cwd_fd)
    s.check(posix_spawn_file_actions_addfchdir_np(&s.actions, cwd_fd.get()), "posix_spawn: fchdir");
  // dup2(fd, fd) clears close-on-exec, which is what an fd that is its own target needs.
  for (int i = 0; i < 3; ++i)
    if (st.sources[i] >= 0) s.check(posix_spawn_file_actions_adddup2(&s.actions, st.sources[i], i), "posix_spawn: dup2");
  if (options.close_fds) {
    std::set<int> keep(options.pass_fds.begin(), options.pass_fds.end());
    keep.erase(keep.begin(), keep.lower_bound(3));
    int first_closed = 3;
    if (!keep.empty()) {
      for (int fd : keep)
        if (::fcntl(fd, F_GETFD) < 0)
          throw ValueError("Popen: pass_fds holds " + std::to_string(fd) + ", which is not an open file descriptor");
      // A close of an fd that is not open is not an error for glibc's posix_spawn.
      for (int fd = 3; fd < *keep.rbegin(); ++fd)
        if (!keep.count(fd)) s.check(posix_spawn_file_actions_addclose(&s.actions, fd), "posix_spawn: close");
      first_closed = *keep.rbegin() + 1;
      for (int fd : keep) s.check(posix_spawn_file_actions_adddup2(&s.actions, fd, fd), "posix_spawn: dup2");
    }
    s.check(posix_spawn_file_actions_addclosefrom_np(&s.actions, first_closed), "posix_spawn: closefrom");
  }
  // Python's restore_signals: a child must not inherit an ignored SIGPIPE or SIGXFSZ.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGXFSZ);
  short flags = POSIX_SPAWN_SETSIGDEF;
  if (options.start_new_session) flags |= POSIX_SPAWN_SETSID;
  s.check(posix_spawnattr_setsigdefault(&s.attr, &defaults), "posix_spawnattr_setsigdefault");
  s.check(posix_spawnattr_setflags(&s.attr, flags), "posix_spawnattr_setflags");
}

}  // namespace

Popen::Popen(Args args, Options options) : args_(std::move(args.argv)) {
  cleanup_active();
  check_popen_options(args_, options);
  ChildProgram child = child_program(args_, options);
  Fd cwd_fd = open_cwd(options, child.program);
  ChildEnvironment env(options);
  const std::string program = resolve_program(child.program, options, cwd_fd);
  StdStreams streams = redirect_std_streams(options);
  SpawnState s;
  plan_child_setup(s, options, cwd_fd, streams);

  std::vector<char*> cargv;
  for (auto& a : child.argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // glibc's posix_spawn reports a failed exec (or dup2, fchdir) as its return value and has
  // already reaped that child: nothing is left behind.
  pid_t pid;
  if (int e = ::posix_spawn(&pid, program.c_str(), &s.actions, &s.attr, cargv.data(), env.envp())) {
    std::string where = options.cwd ? " in " + quote(*options.cwd) : std::string();
    throw_os_error(e, "cannot run " + quote(program) + where);
  }
  pid_ = pid;
  // A pidfd lets wait(timeout) sleep in poll(2); on kernels before 5.3 wait() falls back to
  // sleeping in steps.
  pidfd_ = mpp::detail::os::pidfd_open(pid_);
  stdin_fd_ = std::move(streams.parent_end[0]);
  stdout_fd_ = std::move(streams.parent_end[1]);
  stderr_fd_ = std::move(streams.parent_end[2]);
}

Popen::Popen(Popen&& o) noexcept
    : args_(std::move(o.args_)),
      pid_(std::exchange(o.pid_, -1)),
      pidfd_(std::move(o.pidfd_)),
      returncode_(std::exchange(o.returncode_, std::nullopt)),
      stdin_fd_(std::move(o.stdin_fd_)),
      stdout_fd_(std::move(o.stdout_fd_)),
      stderr_fd_(std::move(o.stderr_fd_)),
      communication_started_(o.communication_started_),
      input_(std::move(o.input_)),
      input_offset_(o.input_offset_),
      stdout_buf_(std::move(o.stdout_buf_)),
      stderr_buf_(std::move(o.stderr_buf_)),
      stdout_was_pipe_(o.stdout_was_pipe_),
      stderr_was_pipe_(o.stderr_was_pipe_) {}

Popen& Popen::operator=(Popen&& o) noexcept {
  if (this != &o) {
    this->~Popen();
    new (this) Popen(std::move(o));
  }
  return *this;
}

Popen::~Popen() {
  close_all();
  if (pid_ > 0 && !returncode_ && !try_reap()) {
    Active& a = active();
    std::lock_guard<std::mutex> lock(a.m);
    a.pids.push_back(pid_);
  }
  pidfd_.reset();
}

void Popen::close_all() noexcept {
  stdin_fd_.reset();
  stdout_fd_.reset();
  stderr_fd_.reset();
}

void Popen::close_stdin() noexcept { stdin_fd_.reset(); }
void Popen::close_stdout() noexcept { stdout_fd_.reset(); }
void Popen::close_stderr() noexcept { stderr_fd_.reset(); }

bool Popen::try_reap() {
  if (returncode_) return true;
  int status = 0;
  pid_t r;
  do r = ::waitpid(pid_, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r == pid_) {
    returncode_ = decode_status(status);
  } else if (r < 0 && errno == ECHILD) {
    // Someone else (a SIGCHLD handler, waitpid(-1)) reaped it; Python reports 0 then too.
    returncode_ = 0;
  }
  return returncode_.has_value();
}

void Popen::reap_blocking() {
  int status = 0;
  pid_t r;
  do r = ::waitpid(pid_, &status, 0);
  while (r < 0 && errno == EINTR);
  returncode_ = r == pid_ ? decode_status(status) : 0;
}

std::optional<int> Popen::poll() {
  try_reap();
  return returncode_;
}

int Popen::wait(Timeout timeout) {
  if (returncode_) return *returncode_;
  if (!timeout) {
    reap_blocking();
    return *returncode_;
  }
  auto deadline = deadline_of(timeout);
  auto step = std::chrono::microseconds(500);
  while (!try_reap()) {
    if (expired(deadline)) throw TimeoutExpired(args_, seconds(timeout));
    if (pidfd_) {
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, poll_ms(deadline));
    } else {
      // No pidfd: sleep in growing steps, as CPython's Popen.wait(timeout) does.
      auto left = *deadline - Clock::now();
      std::this_thread::sleep_for(std::min<Clock::duration>(step, left));
      step = std::min<std::chrono::microseconds>(step * 2, std::chrono::milliseconds(50));
    }
  }
  return *returncode_;
}

void Popen::send_signal(int sig) {
  // A child not yet reaped keeps its pid (as a zombie at worst), so the pid names our child.
  if (pid_ <= 0 || try_reap()) return;
  if (::kill(pid_, sig) != 0 && errno != ESRCH) throw_os_error(errno, "kill(" + std::to_string(pid_) + ")");
}

void Popen::terminate() { send_signal(SIGTERM); }
void Popen::kill() { send_signal(SIGKILL); }

std::pair<std::optional<std::string>, std::optional<std::string>> Popen::communicate(
    std::optional<std::string> input, Timeout timeout) {
  if (communication_started_ && input)
    throw ValueError("communicate: cannot send input after starting communication");
  if (input && !stdin_fd_)
    throw ValueError("communicate: input given but the child's stdin is not a PIPE");
  auto deadline = deadline_of(timeout);
  if (!communication_started_) {
    communication_started_ = true;
    stdout_was_pipe_ = static_cast<bool>(stdout_fd_);
    stderr_was_pipe_ = static_cast<bool>(stderr_fd_);
    if (input && !input->empty()) {
      input_ = std::move(*input);
      // Non-blocking, so that a write never waits for more room than poll(2) promised.
      int fl = ::fcntl(stdin_fd_.get(), F_GETFL);
      ::fcntl(stdin_fd_.get(), F_SETFL, fl | O_NONBLOCK);
    } else {
      close_stdin();
    }
  }

  auto timed_out = [&] {
    std::optional<std::string> out, err;
    if (stdout_was_pipe_) out = stdout_buf_;
    if (stderr_was_pipe_) err = stderr_buf_;
    return TimeoutExpired(args_, seconds(timeout), std::move(out), std::move(err));
  };
  auto read_into = [](Fd& fd, std::string& buf) {
    constexpr std::size_t chunk = 64 * 1024;
    std::size_t old = buf.size();
    buf.resize(old + chunk);
    ssize_t n = ::read(fd.get(), buf.data() + old, chunk);
    buf.resize(old + (n > 0 ? static_cast<std::size_t>(n) : 0));
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) fd.reset();
  };

  {
    SigpipeBlock no_sigpipe;
    while (stdin_fd_ || stdout_fd_ || stderr_fd_) {
      pollfd fds[3];
      int n = 0, in_i = -1, out_i = -1, err_i = -1;
      if (stdin_fd_) fds[in_i = n++] = {stdin_fd_.get(), POLLOUT, 0};
      if (stdout_fd_) fds[out_i = n++] = {stdout_fd_.get(), POLLIN, 0};
      if (stderr_fd_) fds[err_i = n++] = {stderr_fd_.get(), POLLIN, 0};
      int ready = ::poll(fds, static_cast<nfds_t>(n), poll_ms(deadline));
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw_os_error(errno, "communicate: poll");
      }
      if (ready == 0) {
        if (expired(deadline)) throw timed_out();
        continue;
      }
      if (in_i >= 0 && fds[in_i].revents) {
        // A child that exits or closes its stdin early gives EPIPE/POLLERR: like CPython,
        // stop writing and go on reading.
        std::size_t left = input_.size() - input_offset_;
        ssize_t w = ::write(stdin_fd_.get(), input_.data() + input_offset_, std::min<std::size_t>(left, 1 << 20));
        if (w > 0) input_offset_ += static_cast<std::size_t>(w);
        if (w < 0 && errno == EPIPE) no_sigpipe.saw_epipe();
        if (input_offset_ == input_.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) {
          close_stdin();
          std::string().swap(input_);
        }
      }
      if (out_i >= 0 && fds[out_i].revents) read_into(stdout_fd_, stdout_buf_);
      if (err_i >= 0 && fds[err_i].revents) read_into(stderr_fd_, stderr_buf_);
    }
  }
  try {
    wait(deadline ? std::optional<std::chrono::duration<double>>(std::max(
                        Clock::duration::zero(), *deadline - Clock::now()))
                  : std::nullopt);
  } catch (const TimeoutExpired&) {
    throw timed_out();
  }
  std::optional<std::string> out, err;
  if (stdout_was_pipe_) out = std::exchange(stdout_buf_, {});
  if (stderr_was_pipe_) err = std::exchange(stderr_buf_, {});
  return {std::move(out), std::move(err)};
}

// ---------------------------------------------------------------------------------------------
// run and friends

CompletedProcess run(Args args, Options options) {
  if (options.input && options.stdin.kind() != Redirect::Kind::inherit)
    throw ValueError("run: stdin and input may not both be used");
  if (options.capture_output && (options.stdout.kind() != Redirect::Kind::inherit ||
                                 options.stderr.kind() != Redirect::Kind::inherit))
    throw ValueError("run: stdout and stderr may not be used with capture_output");
  // run()'s own options stay here; the rest go to Popen.
  std::optional<std::string> input = std::exchange(options.input, std::nullopt);
  Timeout timeout = std::exchange(options.timeout, std::nullopt);
  bool check = std::exchange(options.check, false);
  if (input) options.stdin = PIPE;
  if (std::exchange(options.capture_output, false)) options.stdout = options.stderr = PIPE;
  Popen p(std::move(args), std::move(options));
  std::pair<std::optional<std::string>, std::optional<std::string>> out;
  try {
    out = p.communicate(std::move(input), timeout);
  } catch (...) {
    // As CPython: kill and reap; the TimeoutExpired already holds the output read so far.
    // Reading on would hang if a grandchild holds the pipes open.
    p.kill();
    p.wait();
    throw;
  }
  CompletedProcess cp{p.args(), *p.returncode(), std::move(out.first), std::move(out.second)};
  if (check) cp.check_returncode();
  return cp;
}

int call(Args args, Options options) {
  return run(std::move(args), std::move(options)).returncode;
}

int check_call(Args args, Options options) {
  options.check = true;
  return run(std::move(args), std::move(options)).returncode;
}

std::string check_output(Args args, Options options) {
  if (options.stdout.kind() != Redirect::Kind::inherit || options.capture_output)
    throw ValueError("check_output: stdout may not be given, it is the output");
  options.stdout = PIPE;
  options.check = true;
  return std::move(*run(std::move(args), std::move(options)).stdout);
}

}  // namespace mpp::subprocess
