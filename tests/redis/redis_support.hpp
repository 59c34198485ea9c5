// Support for the Redis tests: the server they use, and private servers they control.
//
// Most tests use the server named by MPP_REDIS_URL (tools/with-redis starts one for
// tools/test). When it is unset a test prints "SKIPPED: ..." (ctest reports it as skipped)
// — except under CI (CI set), where that is a failure. Tests that need to restart a server
// or configure passwords start their own redis-server (RedisServer below) on a free port.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace mpp::test {

inline bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci && *ci && std::string(ci) != "0" && std::string(ci) != "false";
}

// The shared server's URL, or "" after printing why the test is skipped.
inline std::string redis_url() {
  const char* url = std::getenv("MPP_REDIS_URL");
  if (url && *url) return url;
  if (in_ci()) FAIL("MPP_REDIS_URL is unset under CI: tools/test starts a redis-server and sets it");
  std::cout << "SKIPPED: MPP_REDIS_URL is unset; run ./tools/test, or set it to a Redis server "
               "you can write to (e.g. redis://127.0.0.1:6379/15)\n";
  return "";
}

// A key prefix no other test process uses, so tests can share one server.
inline std::string unique_name(const std::string& what) {
  return "mpptest:" + std::to_string(getpid()) + ":" + what;
}

inline bool have_redis_server() {
  if (system("command -v redis-server >/dev/null 2>&1") == 0) return true;
  if (in_ci()) FAIL("redis-server is not installed under CI (tools/setup installs it)");
  std::cout << "SKIPPED: redis-server is not installed (tools/setup installs it)\n";
  return false;
}

// A port nobody listens on right now.
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A redis-server of the test's own, on 127.0.0.1 and a free port, with its data in a
// temporary directory; killed and removed by the destructor. Readiness is its "Ready to
// accept connections" log line, read from a pipe (no polling).
class RedisServer {
 public:
  // `netns`: the name of a network namespace (ip netns) to run it in, "" for this one.
  explicit RedisServer(std::vector<std::string> extra_args = {}, std::string bind = "127.0.0.1",
                       std::string netns = "")
      : extra_(std::move(extra_args)), bind_(std::move(bind)), netns_(std::move(netns)) {
    char tmpl[] = "/tmp/mpp-redis-test-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
    for (int attempt = 0;; ++attempt) {
      port_ = free_port();
      std::string out;
      if (launch(out)) break;
      if (attempt < 5 && out.find("Address already in use") != std::string::npos) continue;
      throw std::runtime_error("redis-server did not start:\n" + out);
    }
  }
  ~RedisServer() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return bind_; }
  std::string url(const std::string& credentials = "", int db = 0) const {
    return "redis://" + (credentials.empty() ? "" : credentials + "@") + bind_ + ":" +
           std::to_string(port_) + "/" + std::to_string(db);
  }

  // SIGKILL: a crash. The data survive only as far as the persistence options kept them.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  // Starts it again, on the same port with the same data directory.
  void restart() {
    kill();
    std::string out;
    if (!launch(out)) throw std::runtime_error("redis-server did not restart:\n" + out);
  }

 private:
  bool launch(std::string& out) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> args{"redis-server", "--port", std::to_string(port_), "--bind",
                                  bind_, "--dir", dir_, "--save", "", "--daemonize", "no",
                                  "--logfile", "", "--loglevel", "notice"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(97);
      if (!netns_.empty()) {
        int ns = open(("/run/netns/" + netns_).c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) _exit(96);
      }
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execvp("redis-server", argv.data());
      _exit(127);
    }
    close(fds[1]);
    // Redis ignores SIGPIPE, so closing our end once it is ready costs it nothing.
    bool ready = false;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fds[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      if (out.find("Ready to accept connections") != std::string::npos) {
        ready = true;
        break;
      }
    }
    close(fds[0]);
    if (!ready) {
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      pid_ = -1;
    }
    return ready;
  }

  std::vector<std::string> extra_;
  std::string bind_;
  std::string netns_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace mpp::test
