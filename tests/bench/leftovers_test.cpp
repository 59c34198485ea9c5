// The comparison suite's own files (Boost segments, message queues, the corpus) do not
// outlive it: removed when it is stopped by SIGINT, SIGTERM or SIGHUP, and, for a run killed
// outright, by the next run.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "leftovers.hpp"
#include "support/child.hpp"

namespace {

namespace fs = std::filesystem;

std::string shm(const std::string& name) { return "/dev/shm/" + name; }
std::string tmp(const std::string& name) { return (fs::temp_directory_path() / name).string(); }
std::string prefix(pid_t pid) { return "mpp-bench-" + std::to_string(pid) + "-"; }

void make_file(const std::string& path) {
  const int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  close(fd);
}

// Removes the files a test made, whatever it checked.
struct Made {
  std::vector<std::string> paths;
  const std::string& add(std::string p) {
    make_file(p);
    paths.push_back(std::move(p));
    return paths.back();
  }
  ~Made() {
    for (const auto& p : paths) unlink(p.c_str());
  }
};

}  // namespace

TEST_CASE("the suite stopped by SIGINT, SIGTERM or SIGHUP removes its own files, and no others") {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    INFO("signal " << sig);
    Made made;
    const std::string other = made.add(shm(prefix(getpid()) + "not-the-child's"));
    mpp::test::Child child([](int ready) {
      bench::remove_bench_files_on_signal();
      make_file(shm(prefix(getpid()) + "mq0"));
      make_file(tmp(prefix(getpid()) + "corpus-5000.txt"));
      mpp::test::signal_ready(ready);
      for (;;) pause();  // until the signal
    });
    REQUIRE(child.wait_ready());
    const std::string mq = shm(prefix(child.pid()) + "mq0");
    const std::string corpus = tmp(prefix(child.pid()) + "corpus-5000.txt");
    made.paths.push_back(mq);
    made.paths.push_back(corpus);
    REQUIRE(fs::exists(mq));
    REQUIRE(fs::exists(corpus));
    REQUIRE(kill(child.pid(), sig) == 0);
    CHECK(child.exit_code() == -sig);  // ended as the signal ends a process
    CHECK_FALSE(fs::exists(mq));
    CHECK_FALSE(fs::exists(corpus));
    CHECK(fs::exists(other));
  }
}

TEST_CASE("at start, the files of runs whose process is gone are removed, and a live run's are kept") {
  mpp::test::Child gone([](int) {});
  const pid_t dead = gone.pid();
  REQUIRE(gone.exit_code() == 0);  // reaped: no process has that pid now (until it is reused)
  Made made;
  const std::string stale_mq = made.add(shm(prefix(dead) + "mq1"));
  const std::string stale_corpus = made.add(tmp(prefix(dead) + "corpus-3000000.txt"));
  const std::string stale_python = made.add(shm("mpp-bench-" + std::to_string(dead)));
  const std::string live = made.add(shm(prefix(getpid()) + "wordcount"));
  const std::string unrelated = made.add(shm("mpp-benchmark-notes-" + std::to_string(dead)));
  bench::remove_stale_bench_files();
  CHECK_FALSE(fs::exists(stale_mq));
  CHECK_FALSE(fs::exists(stale_corpus));
  CHECK_FALSE(fs::exists(stale_python));
  CHECK(fs::exists(live));
  CHECK(fs::exists(unrelated));
}
