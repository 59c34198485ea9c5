// mpp::subprocess: Python's `subprocess` module for C++ on Linux — run, call, check_call,
// check_output and Popen with communicate, with Python's names and meaning.
//
// Children are started with posix_spawn (docs/design/subprocess.md): a program that cannot be
// found or executed is an exception in the parent that names it, never a child that exits 127.
// No shell is involved unless `shell = true` (then "/bin/sh -c"). Children inherit only fds
// 0, 1, 2 and `pass_fds` (Python's close_fds=True). Nothing here changes the parent's signal
// dispositions; writes to a child's stdin never raise SIGPIPE in the parent.
//
// Bytes in and out are `std::string` (Python's bytes); there is no text mode.
// The member names `stdin`, `stdout`, `stderr` are Python's; they rely on glibc defining the
// <cstdio> macros of the same names as themselves, which it does.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "mpp/detail/os/fd.hpp"
#include "mpp/errors.hpp"

namespace mpp::subprocess {

// How one of a child's standard streams is connected (Python's stdin=/stdout=/stderr=
// arguments). Default-constructed it is Python's None: the child inherits the parent's stream.
// An int converts to "this file descriptor" (the parent keeps it open and owns it).
class Redirect {
 public:
  // Python's None, PIPE, DEVNULL, STDOUT, or a file descriptor.
  enum class Kind { inherit, pipe, devnull, stdout_, fd };
  constexpr Redirect() = default;
  // This file descriptor (implicit, as Python takes an int).
  constexpr Redirect(int fd) : kind_(Kind::fd), fd_(fd) {}  // NOLINT: implicit, as Python's int
  // One of the kinds without a descriptor (PIPE, DEVNULL and STDOUT are these).
  constexpr explicit Redirect(Kind k) : kind_(k) {}
  // Which kind of connection this is.
  constexpr Kind kind() const noexcept { return kind_; }
  // The file descriptor of Kind::fd, else -1.
  constexpr int fd() const noexcept { return fd_; }

 private:
  Kind kind_ = Kind::inherit;
  int fd_ = -1;
};

// subprocess.PIPE: a new pipe to the child; the parent end is owned by the Popen.
inline constexpr Redirect PIPE{Redirect::Kind::pipe};
// subprocess.DEVNULL: /dev/null.
inline constexpr Redirect DEVNULL{Redirect::Kind::devnull};
// subprocess.STDOUT: for stderr only — the same place as the child's stdout.
inline constexpr Redirect STDOUT{Redirect::Kind::stdout_};

// A child's whole environment (Python's env= mapping): it replaces the parent's.
using Environment = std::map<std::string, std::string>;

// The parent's environment as an Environment (Python: dict(os.environ)), to copy and change.
Environment environ_copy();

// A child's args (Python's args=): a list of strings — the program and its arguments — or a
// single string, which is the program name alone, or the command line when shell is true.
// Brace lists are lists: run({"ls", "-l"}); run("ls -l | wc", {.shell = true}).
class Args {
 public:
  // A list: the program, then its arguments (implicit, so a brace list or vector is Args).
  Args(std::initializer_list<std::string> list) : argv(list) {}  // NOLINT: implicit by design
  Args(std::vector<std::string> list) : argv(std::move(list)) {}  // NOLINT
  // A single string: the program name alone, or the command line when shell is true.
  Args(std::string single) : argv{std::move(single)} {}           // NOLINT
  Args(const char* single) : argv{std::string(single)} {}         // NOLINT
  // The list of strings, as given.
  std::vector<std::string> argv;
};

// A timeout; fractional seconds are fine (`1.5s`, `200ms`). No value = wait forever.
using Timeout = std::optional<std::chrono::duration<double>>;

// The keyword arguments of run(), call(), check_call(), check_output() and Popen, with
// Python's names, defaults and order (designated initializers must keep this order).
// The first four are run()'s own; Popen rejects them with a ValueError.
struct Options {
  // Bytes written to the child's stdin, which is then closed; implies stdin = PIPE.
  std::optional<std::string> input{};
  // true: stdout = stderr = PIPE (and neither may be given).
  bool capture_output = false;
  // Kill the child and throw TimeoutExpired after this long.
  Timeout timeout{};
  // true: a non-zero returncode throws CalledProcessError.
  bool check = false;

  // Where the child's stdin, stdout and stderr go: inherited (default), PIPE, DEVNULL, an fd,
  // or (stderr only) STDOUT.
  Redirect stdin{};
  Redirect stdout{};
  Redirect stderr{};
  // true: run args[0] as a command line with "/bin/sh -c args[0] args[1]...".
  bool shell = false;
  // The program to run instead of args[0] (args[0] is still the child's argv[0]).
  std::optional<std::string> executable{};
  // The child's working directory; a relative program path is resolved against it.
  std::optional<std::string> cwd{};
  // The child's whole environment; without it the child inherits the parent's. A program
  // name without '/' is looked up in this environment's PATH, as Python does.
  std::optional<Environment> env{};
  // false: the child inherits every fd the parent did not mark close-on-exec.
  bool close_fds = true;
  // fds the child keeps (at the same numbers); giving any turns close_fds on, as in Python.
  std::vector<int> pass_fds{};
  // true: the child calls setsid() (it leaves the parent's session and process group).
  bool start_new_session = false;
};

// subprocess.CompletedProcess: what run() returns.
struct CompletedProcess {
  // The args the child was started with.
  std::vector<std::string> args;
  // The exit status, or -N if the child was killed by signal N.
  int returncode = 0;
  // What the child wrote to stdout/stderr if they were PIPEs, else no value.
  std::optional<std::string> stdout;
  std::optional<std::string> stderr;

  // Throws CalledProcessError (with stdout and stderr) if returncode is not 0.
  void check_returncode() const;
};

// subprocess.Popen: a running child program.
//
// Thread safety: one Popen must not be used from two threads at once.
// Destroying a Popen closes its pipe ends and reaps the child if it has exited. A child still
// running is left running (as Python does) and remembered; it is reaped by a later Popen
// construction or, once the parent exits, by init, so it never lingers as a zombie for long.
class Popen {
 public:
  // Starts `args[0]` with arguments `args` (see Options).
  // Throws FileNotFoundError (program or cwd missing), PermissionError (not executable, or
  // cwd not searchable) or OSError (any other exec or system-call failure), each naming the
  // program or directory; ValueError for empty args, STDOUT given for stdin/stdout, or an
  // invalid fd, or input/capture_output/timeout/check given (they are run()'s; give input and
  // timeout to communicate). No child is left behind when it throws.
  explicit Popen(Args args, Options options = {});
  // Popen({"prog", "arg"}) — a brace list is the args, not a Popen to move from.
  explicit Popen(std::initializer_list<std::string> args, Options options = {})
      : Popen(Args(args), std::move(options)) {}

  // Moving takes over the child and its pipe ends; `other` is left without a child.
  Popen(Popen&& other) noexcept;
  Popen& operator=(Popen&& other) noexcept;
  Popen(const Popen&) = delete;
  Popen& operator=(const Popen&) = delete;
  ~Popen();

  // Sends `input` (if any) to stdin and closes it, reads stdout and stderr until EOF, waits for
  // the child and returns {stdout, stderr} (each with a value only if it was a PIPE). It never
  // deadlocks, whatever the sizes, and ignores a child that closes its stdin early (EPIPE).
  // With a timeout it throws TimeoutExpired (with the output so far) and keeps what it has read
  // and written: call it again (without input) to go on. Input given with no stdin PIPE, or
  // again after a timeout, is a ValueError.
  std::pair<std::optional<std::string>, std::optional<std::string>> communicate(
      std::optional<std::string> input = std::nullopt, Timeout timeout = std::nullopt);

  // Reaps the child if it has exited; returns returncode() (no value while it runs).
  std::optional<int> poll();
  // Waits for the child to exit and returns its returncode. Throws TimeoutExpired if it is
  // still running after `timeout` (the child keeps running). Does not read the pipes: a child
  // that fills a PIPE blocks, so use communicate() when there are PIPEs.
  int wait(Timeout timeout = std::nullopt);

  // Sends `sig` to the child; does nothing if it has already been reaped.
  void send_signal(int sig);
  // SIGTERM.
  void terminate();
  // SIGKILL.
  void kill();

  // The exit status, -N if killed by signal N; no value until poll/wait/communicate saw it exit.
  std::optional<int> returncode() const noexcept { return returncode_; }
  // The child's pid.
  pid_t pid() const noexcept { return pid_; }
  // The args it was started with.
  const std::vector<std::string>& args() const noexcept { return args_; }

  // The parent's ends of the PIPEs, or -1. They stay owned by the Popen: read and write them
  // (blocking), but close them only with close_stdin/close_stdout/close_stderr.
  int stdin() const noexcept { return stdin_fd_.get(); }
  int stdout() const noexcept { return stdout_fd_.get(); }
  int stderr() const noexcept { return stderr_fd_.get(); }
  void close_stdin() noexcept;
  void close_stdout() noexcept;
  void close_stderr() noexcept;

 private:
  void reap_blocking();
  bool try_reap();
  void close_all() noexcept;

  std::vector<std::string> args_;
  pid_t pid_ = -1;
  mpp::detail::os::Fd pidfd_;
  std::optional<int> returncode_;
  mpp::detail::os::Fd stdin_fd_;
  mpp::detail::os::Fd stdout_fd_;
  mpp::detail::os::Fd stderr_fd_;
  // communicate()'s progress, kept across a TimeoutExpired.
  bool communication_started_ = false;
  std::string input_;
  std::size_t input_offset_ = 0;
  std::string stdout_buf_;
  std::string stderr_buf_;
  bool stdout_was_pipe_ = false;
  bool stderr_was_pipe_ = false;
};

// Runs a program to completion and returns its CompletedProcess (see Options).
// Throws what Popen throws; CalledProcessError if check and returncode != 0; TimeoutExpired
// (with the output so far) after killing and reaping the child if timeout passed; ValueError
// for input together with stdin, or capture_output together with stdout or stderr.
CompletedProcess run(Args args, Options options = {});

// Runs and returns the returncode (Python: subprocess.call). Throws as run() does.
int call(Args args, Options options = {});

// Runs; throws CalledProcessError if the returncode is not 0, else returns 0.
int check_call(Args args, Options options = {});

// Runs with stdout = PIPE and check = true and returns what the child wrote to stdout.
// Giving options.stdout is a ValueError.
std::string check_output(Args args, Options options = {});

}  // namespace mpp::subprocess
