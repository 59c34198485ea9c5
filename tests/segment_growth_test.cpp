// Segments that grow: on demand, visible to every process through the mapping it already
// has, crash-safe store by store, refused with a SegmentFull that says why.
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>


#include <catch2/catch.hpp>
#include <fstream>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"
#include "support/child.hpp"

using mpp::detail::Segment;

namespace {

std::string unique_name(const char* what) {
  static int n = 0;
  return "mpp-test-grow-" + std::string(what) + "-" + std::to_string(getpid()) + "-" +
         std::to_string(++n);
}

std::size_t file_size(const std::string& name) {
  struct stat st {};
  REQUIRE(stat(("/dev/shm/" + name).c_str(), &st) == 0);
  return static_cast<std::size_t>(st.st_size);
}

// Fills `n` bytes at `p` with a pattern derived from `seed`, or checks it.
void fill(void* p, std::size_t n, unsigned seed) {
  auto* c = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) c[i] = static_cast<unsigned char>(seed * 131 + i * 7);
}
bool holds(const void* p, std::size_t n, unsigned seed) {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (c[i] != static_cast<unsigned char>(seed * 131 + i * 7)) return false;
  }
  return true;
}

const char* g_kill_at = nullptr;  // the crash point a child dies at
void die_at_point(const char* point) {
  if (g_kill_at && std::strcmp(point, g_kill_at) == 0) raise(SIGKILL);
}

}  // namespace

TEST_CASE("a segment grows on demand, and every process sees the new pages through its mapping") {
  auto name = unique_name("grow");
  auto seg = Segment::create(name, 256 << 10, {.max_bytes = 128 << 20});
  auto other = Segment::attach(name);  // a second mapping, made before any growth
  CHECK(seg->size() == (256u << 10));
  CHECK(seg->max_size() == (128u << 20));
  CHECK(file_size(name) == (256u << 10));

  void* first = seg->allocate(1000);
  fill(first, 1000, 1);
  std::vector<std::pair<void*, unsigned>> blocks;
  for (unsigned i = 0; i < 300; ++i) {  // ~19 MiB: several growths
    void* p = seg->allocate(64 << 10);
    fill(p, 64 << 10, i);
    blocks.emplace_back(p, i);
  }
  CHECK(seg->size() > (16u << 20));
  CHECK(seg->header().growths.load() >= 3);
  CHECK(file_size(name) == seg->size());
  CHECK(holds(first, 1000, 1));  // a pointer from before the growths is still good
  // The attacher reads every block through the mapping it had before they existed.
  for (auto [p, i] : blocks) REQUIRE(holds(other->at(seg->offset_of(p)), 64 << 10, i));
  CHECK(other->size() == seg->size());

  // A forked child grows it further; the parent's old pointers and mapping see it all.
  std::uint64_t child_block = 0;
  auto* shared_off = static_cast<std::uint64_t*>(seg->allocate(sizeof(std::uint64_t)));
  auto before = seg->size();
  mpp::test::Child child([&](int) {
    void* p = other->allocate(32 << 20);
    fill(p, 32 << 20, 77);
    *shared_off = other->offset_of(p);
  });
  REQUIRE(child.exit_code() == 0);
  child_block = *shared_off;
  CHECK(seg->size() > before);
  CHECK(holds(seg->at(child_block), 32 << 20, 77));
  CHECK(holds(first, 1000, 1));
  CHECK(seg->check_heap());
  CHECK(other->check_heap());
}

TEST_CASE("SegmentFull says which limit: the maximum, or /dev/shm itself, and the segment stays usable") {
  auto fixed = Segment::anonymous(1 << 20);  // max == size: today's fixed segment
  CHECK(fixed->max_size() == fixed->size());
  std::vector<void*> held;
  try {
    for (;;) held.push_back(fixed->allocate(10000));
  } catch (const mpp::SegmentFull& e) {
    CHECK_THAT(e.what(), Catch::Contains("maximum size"));
  }
  CHECK(fixed->size() == (1u << 20));
  fixed->deallocate(held.back());
  CHECK(fixed->allocate(10000) != nullptr);
  CHECK(fixed->check_heap());

  auto capped = Segment::anonymous(256 << 10, 8, 4 << 20);
  CHECK_THROWS_WITH(capped->allocate(5 << 20), Catch::Contains("maximum size"));
  CHECK(capped->allocate(3 << 20) != nullptr);  // grows to the max, not past it
  CHECK(capped->size() <= (4u << 20));

  // A max beyond what /dev/shm can ever hold: the growth that needs more is refused by the
  // filesystem (all at once: more than its total size), and the message says so.
  struct statvfs fs {};
  REQUIRE(statvfs("/dev/shm", &fs) == 0);
  const std::size_t shm_bytes = static_cast<std::size_t>(fs.f_blocks) * fs.f_frsize;
  auto name = unique_name("full");
  auto seg = Segment::create(name, 256 << 10, {.max_bytes = 2 * shm_bytes + (1 << 30)});
  void* small = seg->allocate(100);
  auto size = seg->size();
  CHECK_THROWS_WITH(seg->allocate(shm_bytes + (64 << 20)), Catch::Contains("/dev/shm is full"));
  CHECK(seg->size() == size);
  CHECK(file_size(name) == size);
  CHECK(seg->allocate(1 << 20) != nullptr);
  seg->deallocate(small);
  CHECK(seg->check_heap());

  CHECK_THROWS_AS(Segment::create(unique_name("bad-max"), 1 << 20, {.max_bytes = 1 << 19}),
                  mpp::ValueError);
}

TEST_CASE("a grower killed between any two stores of a growth leaves a valid segment") {
  for (const char* point : {"grow:before-fallocate", "grow:before-publish", "grow:before-heap-size"}) {
    INFO(point);
    auto name = unique_name("point");
    auto seg = Segment::create(name, 256 << 10, {.max_bytes = 32 << 20});
    void* kept = seg->allocate(5000);
    fill(kept, 5000, 9);
    const auto size = seg->size();
    mpp::test::Child child([&](int) {
      g_kill_at = point;
      Segment::crash_point = die_at_point;
      seg->allocate(1 << 20);  // needs a growth
      _exit(3);                // not reached: the crash point kills
    });
    REQUIRE(child.exit_code() == -SIGKILL);
    const auto& h = seg->header();
    // The file never lags the published size; past "before-publish" it is already larger.
    CHECK(file_size(name) >= seg->size());
    if (std::strcmp(point, "grow:before-fallocate") != 0) CHECK(file_size(name) > size);
    CHECK(seg->size() == (std::strcmp(point, "grow:before-heap-size") == 0 ? file_size(name) : size));
    // The next allocation recovers the allocator's lock, repairs the derived heap size and
    // grows (reusing the space the dead grower reserved).
    void* p = seg->allocate(2 << 20);
    fill(p, 2 << 20, 4);
    CHECK(h.heap_recoveries.load() == 1);
    CHECK(h.heap_size.load() == seg->size() - h.heap_offset);
    CHECK(file_size(name) == seg->size());
    CHECK(holds(kept, 5000, 9));
    CHECK(holds(p, 2 << 20, 4));
    CHECK(seg->check_heap());
    auto other = Segment::attach(name);
    CHECK(holds(other->at(seg->offset_of(p)), 2 << 20, 4));
  }
}

TEST_CASE("SIGKILL growers 200 times: every segment stays valid and grows to its maximum") {
  std::mt19937 rng(2024);
  constexpr int kRounds = 200, kMaxRounds = 3000;
  int landed = 0;  // kills that hit a growth (the allocator's lock held, or the file ahead)
  for (int round = 0; round < kRounds || (landed == 0 && round < kMaxRounds); ++round) {
    auto name = unique_name("kill");
    auto seg = Segment::create(name, 64 << 10, {.max_bytes = 3 << 20});
    unsigned seed = rng();
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      mpp::test::signal_ready(ready_fd);
      try {
        for (;;) seg->allocate(1 + r() % (96 << 10));
      } catch (const mpp::SegmentFull&) {
      }
      pause();
    });
    REQUIRE(child.wait_ready());
    volatile unsigned spin = 0;  // a random moment in the child's growths (not synchronisation)
    for (unsigned n = rng() % 300000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    const auto file = file_size(name);
    REQUIRE(file >= seg->size());
    REQUIRE(seg->check_heap());  // recovers the lock if the child died holding it
    if (seg->header().heap_recoveries.load() > 0 || file > seg->size()) ++landed;
    REQUIRE_FALSE(seg->read_only());
    REQUIRE(seg->header().heap_size.load() == seg->size() - seg->header().heap_offset);
    // It still grows, all the way to its maximum, and nothing overlaps.
    std::vector<std::pair<void*, unsigned>> blocks;
    try {
      for (unsigned i = 0;; ++i) {
        void* b = seg->allocate(32 << 10);
        fill(b, 32 << 10, i);
        blocks.emplace_back(b, i);
      }
    } catch (const mpp::SegmentFull& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("maximum size"));
    }
    REQUIRE(seg->size() == seg->max_size());
    REQUIRE(file_size(name) == seg->size());
    for (auto [b, i] : blocks) REQUIRE(holds(b, 32 << 10, i));
    REQUIRE(seg->check_heap());
  }
  INFO("kills that landed in a growth: " << landed);
  CHECK(landed > 0);
}

TEST_CASE("anonymous segments live in a memfd: never in /dev/shm, grown and shared with children") {
  // What backs the mapping, from /proc/self/maps (a whole-/dev/shm count would change with
  // every other test program that ctest -j runs beside this one).
  auto backing = [](const void* base) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
      if (std::stoull(line.substr(0, line.find('-')), nullptr, 16) ==
          reinterpret_cast<std::uintptr_t>(base)) {
        auto slash = line.find('/');
        return slash == std::string::npos ? std::string() : line.substr(slash);
      }
    }
    return std::string("(no mapping)");
  };
  auto seg = Segment::anonymous(128 << 10, 8, 256 << 20);
  CHECK_THAT(backing(seg->at(0)), Catch::StartsWith("/memfd:"));
  CHECK(seg->name().empty());
  void* mine = seg->allocate(1000);
  fill(mine, 1000, 3);
  auto* slot = static_cast<std::uint64_t*>(seg->allocate(sizeof(std::uint64_t)));
  mpp::test::Child child([&](int) {
    void* p = seg->allocate(16 << 20);  // the child grows it
    fill(p, 16 << 20, 5);
    *slot = seg->offset_of(p);
  });
  REQUIRE(child.exit_code() == 0);
  CHECK(seg->size() > (16u << 20));
  CHECK(holds(seg->at(*slot), 16 << 20, 5));
  CHECK(holds(mine, 1000, 3));
  CHECK_THAT(backing(seg->at(0)), Catch::StartsWith("/memfd:"));
  CHECK(seg->check_heap());
}

namespace {
int g_ready_fd = -1, g_go_fd = -1;
// Stops a creator after it reserved its pages and before it formats them, until told to go.
void hold_before_format(const char* point) {
  if (std::strcmp(point, "create:before-format") != 0) return;
  mpp::test::signal_ready(g_ready_fd);
  char c;
  if (read(g_go_fd, &c, 1) != 1) _exit(96);
}
}  // namespace

TEST_CASE("an attacher waits for a creator still building, and names it if it gives up") {
  using namespace std::chrono_literals;
  auto name = unique_name("building");
  int go[2];
  REQUIRE(pipe(go) == 0);
  mpp::test::Child creator([&](int ready_fd) {
    g_ready_fd = ready_fd;
    g_go_fd = go[0];
    Segment::crash_point = hold_before_format;
    auto seg = Segment::create(name, 1 << 20);
    Segment::crash_point = nullptr;
    seg->allocate(100);
    mpp::test::signal_ready(ready_fd);
    pause();
  });
  REQUIRE(creator.wait_ready());  // the file exists, the magic is still 0
  auto t0 = std::chrono::steady_clock::now();
  try {
    Segment::attach(name, 300ms);
    FAIL("attached to a segment that is still being built");
  } catch (const mpp::SegmentError& e) {
    std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("still being created by pid " + std::to_string(creator.pid())));
    CHECK_THAT(what, !Catch::Contains("not an mpp segment"));
  }
  CHECK(std::chrono::steady_clock::now() - t0 >= 300ms);
  REQUIRE(write(go[1], "g", 1) == 1);
  auto seg = Segment::attach(name, 20s);  // waits (if need be) until the creator is done
  CHECK(seg->header().creator_pid == creator.pid());
  REQUIRE(creator.wait_ready());
  CHECK(seg->check_heap());
  creator.kill_and_reap();
  Segment::unlink(name);

  // A creator that died while building is named, at once.
  auto dead = unique_name("dead-builder");
  mpp::test::Child doomed([&](int ready_fd) {
    g_ready_fd = ready_fd;
    g_go_fd = go[0];
    Segment::crash_point = hold_before_format;
    // Persisted: a tracked segment whose creator died is removed by its tracker once nobody
    // maps it, which would race with this attach; a persisted one stays to be named.
    Segment::create(dead, 1 << 20, Segment::CreateOptions{.persist = true});
  });
  REQUIRE(doomed.wait_ready());
  doomed.kill_and_reap();
  t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(Segment::attach(dead, 20s), Catch::Contains("creator (pid " + std::to_string(doomed.pid()) +
                                                                ") died before finishing it"));
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  Segment::unlink(dead);
  close(go[0]);
  close(go[1]);
}
