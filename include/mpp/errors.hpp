// The exceptions mpp throws. Every one derives from mpp::Error and is named after
// the exception Python's multiprocessing, queue, subprocess or builtins raise in
// the same situation, so that a reader who knows Python knows what each means.
//
// Messages say what happened and, where there is something to do, what to do.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace mpp {

// The root of every mpp exception: `catch (const mpp::Error&)` catches them all.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A system call failed; error_number() is the errno it reported. (Python: OSError.)
class OSError : public Error {
 public:
  // `what` says what failed; the message is "what: strerror(error_number)".
  OSError(int error_number, const std::string& what);
  // The errno value (Python: OSError.errno).
  int error_number() const noexcept { return errno_; }

 private:
  int errno_;
};

// A named resource (a segment, a program) does not exist. (Python: FileNotFoundError.)
class FileNotFoundError : public OSError {
 public:
  using OSError::OSError;
};

// A named resource exists already where a new one was asked for. (Python: FileExistsError.)
class FileExistsError : public OSError {
 public:
  using OSError::OSError;
};

// The operation is not allowed: a program that is not executable, a directory that cannot be
// searched. (Python: PermissionError.)
class PermissionError : public OSError {
 public:
  using OSError::OSError;
};

// A connection to a server (Redis, a network manager) could not be made, was refused or
// dropped; error_number() is the errno when the system reported one, else 0. A command in
// flight when the connection dropped may or may not have been applied. (Python:
// ConnectionError.)
class ConnectionError : public OSError {
 public:
  using OSError::OSError;
};

// An argument has the right type but a value mpp cannot accept: an empty or too long
// name, task_done() called more often than put(), a semaphore released too often.
// (Python: ValueError.)
class ValueError : public Error {
 public:
  using Error::Error;
};

// A key is not in a Dict. (Python: KeyError.)
class KeyError : public Error {
 public:
  using Error::Error;
};

// An index is outside a List or an Array. (Python: IndexError.)
class IndexError : public Error {
 public:
  using Error::Error;
};

// Bytes could not be decoded into the requested type: truncated, corrupt, or made by
// a different type. The source of the bytes is left as it was. (Python: UnpicklingError.)
class DecodeError : public ValueError {
 public:
  using ValueError::ValueError;
};

// queue.Empty: get_nowait() or get(timeout) found nothing to take.
class Empty : public Error {
 public:
  using Error::Error;
};

// queue.Full: put_nowait() or put(timeout) found no room.
class Full : public Error {
 public:
  using Error::Error;
};

// A blocking call with a timeout did not complete in time (AsyncResult::get, locks).
class TimeoutError : public Error {
 public:
  using Error::Error;
};

// The other end of a Connection or Queue was closed and nothing is left to read.
class EOFError : public Error {
 public:
  using Error::Error;
};

// Misuse of a Process: start() twice, join() before start(), close() while running.
class ProcessError : public Error {
 public:
  using Error::Error;
};

// Connection::recv_bytes_into() was given a buffer smaller than the message. The message
// was consumed; all of it is in message(). (Python: multiprocessing.BufferTooShort.)
class BufferTooShort : public ProcessError {
 public:
  // `message` is the whole message that did not fit.
  explicit BufferTooShort(std::string message)
      : ProcessError("the buffer is too short for a message of " + std::to_string(message.size()) +
                     " bytes; the whole message is in BufferTooShort::message()"),
        message_(std::move(message)) {}
  // The whole message that was received (Python: e.args[0]).
  const std::string& message() const noexcept { return message_; }

 private:
  std::string message_;
};

// The authkey of the other side did not match (network managers).
class AuthenticationError : public ProcessError {
 public:
  using ProcessError::ProcessError;
};

// An exception raised in another process (a pool worker, a manager server), carried
// back with its original type name and message.
class RemoteError : public Error {
 public:
  // The message is "type_name: message".
  RemoteError(std::string type_name, std::string message);
  // The remote exception's type name: the demangled C++ type, or the Python class.
  const std::string& type_name() const noexcept { return type_; }
  // The remote exception's own message (its what(), or Python's str(e)).
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_;
  std::string message_;
};

// A Barrier was aborted or reset while a process waited on it. (Python: threading.BrokenBarrierError.)
class BrokenBarrierError : public Error {
 public:
  using Error::Error;
};

// A Pool can no longer run tasks (it was terminated, or closed for new work).
// (Python: concurrent.futures.process.BrokenProcessPool.)
class BrokenPool : public Error {
 public:
  using Error::Error;
};

// A pool worker died while it ran this task; the message names its pid and the signal.
// Only that task fails; the pool replaces the worker and goes on.
class WorkerLost : public Error {
 public:
  using Error::Error;
};

// A shared-memory segment has no room left for the change asked for. The object that
// was being changed is left exactly as it was, and stays usable.
class SegmentFull : public Error {
 public:
  using Error::Error;
};

// A named object exists, made with other types than the ones asked for. The message
// names both.
class TypeMismatch : public Error {
 public:
  using Error::Error;
};

// A file in /dev/shm is not a usable mpp segment: foreign, truncated, of another format
// version, or found corrupt (after which it is read-only).
class SegmentError : public Error {
 public:
  using Error::Error;
};

namespace subprocess {

// subprocess.CalledProcessError: a checked child exited non-zero.
class CalledProcessError : public Error {
 public:
  // The message names the command and its exit status (or the signal that ended it).
  CalledProcessError(int returncode, std::vector<std::string> cmd,
                     std::optional<std::string> output = std::nullopt,
                     std::optional<std::string> stderr_output = std::nullopt);
  int returncode;                            // the exit status, -N for signal N
  std::vector<std::string> cmd;              // the command's argv
  std::optional<std::string> output;         // its stdout, when it was captured
  std::optional<std::string> stderr_output;  // its stderr, when it was captured (Python: stderr)
};

// subprocess.TimeoutExpired: a child did not finish within the timeout.
class TimeoutExpired : public Error {
 public:
  // The message names the command and the timeout.
  TimeoutExpired(std::vector<std::string> cmd, double timeout_seconds,
                 std::optional<std::string> output = std::nullopt,
                 std::optional<std::string> stderr_output = std::nullopt);
  std::vector<std::string> cmd;              // the command's argv
  double timeout;                            // the timeout, in seconds
  std::optional<std::string> output;         // stdout read before the timeout, when captured
  std::optional<std::string> stderr_output;  // stderr read before the timeout, when captured
};

}  // namespace subprocess

// Also at mpp:: level, beside every other mpp exception.
using subprocess::CalledProcessError;
using subprocess::TimeoutExpired;

// Throws FileNotFoundError, FileExistsError, PermissionError (EACCES, EPERM) or OSError for
// `error_number`, with "what: strerror" as the message.
[[noreturn]] void throw_os_error(int error_number, const std::string& what);

}  // namespace mpp
