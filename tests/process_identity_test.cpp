#include "mpp/detail/process_identity.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>


using namespace mpp::detail;

TEST_CASE("this process has an identity with a start time, and is alive by it") {
  CHECK(self_pid() == getpid());
  CHECK(self_start_ticks() != 0);
  CHECK(self_start_ticks() == process_start_ticks(getpid()));
  CHECK(process_alive(getpid(), self_start_ticks()));
  CHECK(identity_alive(self_identity_word()));
  CHECK(identity_pid(self_identity_word()) == getpid());
}

TEST_CASE("a live pid with another start time is not the process that recorded it") {
  // What a recycled pid looks like: the pid exists, but it started at another tick.
  CHECK_FALSE(process_alive(getpid(), self_start_ticks() + 1));
  CHECK_FALSE(identity_alive(identity_word(getpid(), self_start_ticks() + 1)));
  CHECK(process_alive(getpid(), 0));  // no start time recorded: the pid alone decides
}

TEST_CASE("a forked child gets its own identity, which dies with it") {
  int to_parent[2];
  REQUIRE(pipe(to_parent) == 0);
  // Asked before the fork, so the word is cached: the child must not inherit the cache.
  const std::uint64_t parent_word = self_identity_word();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::uint64_t word = self_identity_word();
    (void)!write(to_parent[1], &word, sizeof word);
    pause();
    _exit(0);
  }
  close(to_parent[1]);
  std::uint64_t word = 0;
  REQUIRE(read(to_parent[0], &word, sizeof word) == sizeof word);
  close(to_parent[0]);
  CHECK(identity_pid(word) == pid);
  CHECK(word != parent_word);
  CHECK(word != self_identity_word());
  CHECK(identity_alive(word));
  kill(pid, SIGKILL);
  REQUIRE(waitpid(pid, nullptr, 0) == pid);
  CHECK_FALSE(identity_alive(word));
  CHECK(process_start_ticks(pid) == 0);
}

TEST_CASE("nonsense identities are never alive") {
  CHECK_FALSE(process_alive(0, 0));
  CHECK_FALSE(process_alive(-5, 0));
  CHECK_FALSE(identity_alive(0));
  CHECK(process_start_ticks(0) == 0);
}
