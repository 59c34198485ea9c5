// Helpers for multi-process tests: a forked child that reports readiness through a pipe
// (never a sleep), is always reaped, and is killed if the test leaves early; and an
// anonymous shared mapping to place objects in before fork.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <new>
#include <stdexcept>

namespace mpp::test {

// Writes one byte to the readiness pipe given to a Child's body.
inline void signal_ready(int fd) {
  char c = 1;
  if (write(fd, &c, 1) != 1) _exit(98);
}

// A forked child running `body(ready_fd)`. It dies with the test process (PDEATHSIG), leaves
// with _exit(0) when body returns, _exit(99) on an exception, and is SIGKILLed and reaped by
// the destructor if still running.
class Child {
 public:
  explicit Child(const std::function<void(int)>& body) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe");
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(97);
      close(fds[0]);
      try {
        body(fds[1]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        _exit(99);
      } catch (...) {
        _exit(99);
      }
      _exit(0);
    }
    close(fds[1]);
    ready_fd_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) kill_and_reap();
    if (ready_fd_ >= 0) close(ready_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }

  // Blocks until the child called signal_ready(); false if it exited first.
  bool wait_ready() {
    char c;
    ssize_t n;
    do n = read(ready_fd_, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1;
  }

  // Reaps the child; returns the raw wait status.
  int join() {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return status;
  }

  // The child's exit code, or -signal, after join().
  int exit_code() {
    int st = join();
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }

  void kill_and_reap() {
    ::kill(pid_, SIGKILL);
    join();
  }

 private:
  pid_t pid_ = -1;
  int ready_fd_ = -1;
  bool reaped_ = false;
};

// A T constructed in an anonymous MAP_SHARED mapping, shared with children forked after it.
template <class T>
class SharedMapping {
 public:
  template <class... A>
  explicit SharedMapping(A&&... a) {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap");
    obj_ = new (p) T(std::forward<A>(a)...);
  }
  ~SharedMapping() {
    obj_->~T();
    munmap(obj_, sizeof(T));
  }
  SharedMapping(const SharedMapping&) = delete;
  SharedMapping& operator=(const SharedMapping&) = delete;
  T* operator->() { return obj_; }
  T& operator*() { return *obj_; }

 private:
  T* obj_;
};

}  // namespace mpp::test
