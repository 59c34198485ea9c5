// The OS layer's owned file descriptor: every descriptor mpp opens and must close is held by
// one, so that an early throw or a move cannot leak it or close it twice. Hand-written: the
// standard library has none, and Boost's (asio's descriptors, Boost.Process's handles) come
// with an io_context or a process model mpp does not use.
#pragma once

#include <unistd.h>

#include <utility>

namespace mpp::detail::os {

// A file descriptor owned by this object (or none: -1). Move-only; the destructor closes it.
class Fd {
 public:
  // No descriptor.
  Fd() noexcept = default;
  // Takes ownership of `fd` (-1 or any negative value: none).
  explicit Fd(int fd) noexcept : fd_(fd < 0 ? -1 : fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  // The descriptor, still owned (-1 when none).
  int get() const noexcept { return fd_; }
  // Whether it holds a descriptor.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Gives up ownership: returns the descriptor, which the caller now closes.
  int release() noexcept { return std::exchange(fd_, -1); }
  // Closes the descriptor held (if any) and takes `fd` instead. Linux frees the descriptor
  // even when close(2) reports EINTR, so it is never retried (a retry could close a
  // descriptor another thread just opened).
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd < 0 ? -1 : fd;
  }

 private:
  int fd_ = -1;
};

// Both ends of a pipe.
struct PipeFds {
  Fd read;   // the end to read from
  Fd write;  // the end to write to
};

// A pipe(2) whose ends are close-on-exec. Throws OSError naming `what` when it fails.
PipeFds make_pipe(const char* what);

}  // namespace mpp::detail::os
