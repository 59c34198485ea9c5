#include "mpp/detail/segment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mpp/errors.hpp"
#include "support/child.hpp"
#include "support/command.hpp"

using mpp::detail::ObjectKind;
using mpp::detail::Segment;

namespace {

std::string unique_name(const char* what) {
  static int n = 0;
  return "mpp-test-" + std::string(what) + "-" + std::to_string(getpid()) + "-" + std::to_string(++n);
}

bool shm_exists(const std::string& name) {
  struct stat st {};
  return stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

// Writes `bytes` of `fill` as /dev/shm/<name>, as a foreign program would.
void write_foreign(const std::string& name, std::size_t bytes, char fill) {
  int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  std::string junk(bytes, fill);
  if (bytes) REQUIRE(write(fd, junk.data(), bytes) == static_cast<ssize_t>(bytes));
  close(fd);
}

// Runs the attach helper program (a separate executable, exec'd) and returns its output.
std::string run_helper(const std::string& args) {
  return mpp::test::run_command(std::string(MPP_ATTACH_HELPER) + " " + args).out;
}

Segment::ObjectSpec spec(std::string_view name, ObjectKind kind, std::string k, std::string v,
                         std::size_t bytes = 64) {
  return Segment::ObjectSpec{name, kind, std::move(k), std::move(v), bytes};
}

}  // namespace

TEST_CASE("a named segment has a complete header and is removed by its creator") {
  auto name = unique_name("basic");
  mode_t old = umask(0);
  auto seg = Segment::create(name, 1 << 20);
  umask(old);
  auto& h = seg->header();
  CHECK(h.magic.load() == mpp::detail::SEGMENT_MAGIC);
  CHECK(h.format_version == mpp::detail::FORMAT_VERSION);
  CHECK(h.creator_pid == getpid());
  CHECK(h.size == (1u << 20));
  CHECK(h.creation_time_ns > 0);
  CHECK(std::string(h.name) == name);
  CHECK(h.heap_offset + h.heap_size == h.size);
  CHECK(seg->is_creator());
  CHECK(seg->name() == name);
  CHECK(seg->free_bytes() > 900'000);
  struct stat st {};
  REQUIRE(stat(("/dev/shm/" + name).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);  // whatever the umask was
  CHECK_THROWS_AS(Segment::create(name, 1 << 20), mpp::FileExistsError);

  auto other = Segment::attach(name);
  CHECK_FALSE(other->is_creator());
  void* p = seg->allocate(100);
  std::memcpy(p, "hello", 6);
  CHECK(std::string(other->at<char>(seg->offset_of(p))) == "hello");
  other.reset();  // an attacher's release removes nothing
  CHECK(shm_exists(name));
  seg.reset();
  CHECK_FALSE(shm_exists(name));
}

TEST_CASE("a persisted segment outlives its creator's handle") {
  auto name = unique_name("persist");
  Segment::create(name, 1 << 20, {.mode = 0640, .persist = true});
  CHECK(shm_exists(name));
  auto seg = Segment::attach(name);
  CHECK(seg->header().persist.load() == 1);
  seg.reset();
  CHECK(Segment::unlink(name));
  CHECK_FALSE(Segment::unlink(name));
}

TEST_CASE("a forked child's release does not remove the creator's segment") {
  auto name = unique_name("fork");
  auto seg = Segment::create(name, 1 << 20);
  mpp::test::Child child([&](int) {
    if (seg->is_creator()) _exit(3);
    seg.reset();  // runs ~Segment in the child
    _exit(0);
  });
  CHECK(child.exit_code() == 0);
  CHECK(shm_exists(name));
  seg.reset();
  CHECK_FALSE(shm_exists(name));
}

TEST_CASE("bad names are ValueErrors") {
  CHECK_THROWS_AS(Segment::create("", 1 << 20), mpp::ValueError);
  CHECK_THROWS_AS(Segment::create("a/b", 1 << 20), mpp::ValueError);
  CHECK_THROWS_AS(Segment::create(std::string(300, 'x'), 1 << 20), mpp::ValueError);
  CHECK_THROWS_AS(Segment::create("..", 1 << 20), mpp::ValueError);
  CHECK_THROWS_AS(Segment::attach(""), mpp::ValueError);
  CHECK_THROWS_AS(Segment::create(unique_name("tiny"), 100), mpp::ValueError);
  auto seg = Segment::anonymous(1 << 20);
  CHECK_THROWS_AS(seg->find_or_create(spec(std::string(200, 'n'), ObjectKind::dict, "int", "int"),
                                      [](void*) {}),
                  mpp::ValueError);
}

TEST_CASE("attaching to something that is not a usable segment is a clear error") {
  CHECK_THROWS_AS(Segment::attach(unique_name("missing")), mpp::FileNotFoundError);

  auto foreign = unique_name("foreign");
  write_foreign(foreign, 64 * 1024, 'x');
  CHECK_THROWS_WITH(Segment::attach(foreign), Catch::Contains("not an mpp segment"));
  shm_unlink(("/" + foreign).c_str());

  auto empty = unique_name("empty");
  write_foreign(empty, 0, 0);
  CHECK_THROWS_WITH(Segment::attach(empty), Catch::Contains("empty"));
  shm_unlink(("/" + empty).c_str());

  auto small = unique_name("small");
  write_foreign(small, 10, 'm');
  CHECK_THROWS_WITH(Segment::attach(small), Catch::Contains("truncated"));
  shm_unlink(("/" + small).c_str());

  auto cut = unique_name("cut");
  Segment::create(cut, 1 << 20, {.persist = true});
  REQUIRE(truncate(("/dev/shm/" + cut).c_str(), 1 << 19) == 0);
  CHECK_THROWS_WITH(Segment::attach(cut), Catch::Contains("truncated"));
  Segment::unlink(cut);

  auto version = unique_name("version");
  Segment::create(version, 1 << 20, {.persist = true})->header().format_version = 99;
  CHECK_THROWS_WITH(Segment::attach(version), Catch::Contains("format version 99"));
  Segment::unlink(version);

  CHECK_THROWS_AS(Segment::attach(foreign), mpp::FileNotFoundError);
}

TEST_CASE("a segment /dev/shm cannot hold is refused at creation, and nothing is left") {
  auto name = unique_name("huge");
  // 64 TiB: more than any /dev/shm here; posix_fallocate refuses it instead of a later SIGBUS.
  CHECK_THROWS_AS(Segment::create(name, std::size_t{64} << 40), mpp::Error);
  CHECK_FALSE(shm_exists(name));
}

TEST_CASE("a full heap is SegmentFull, and frees make room again") {
  auto seg = Segment::anonymous(256 * 1024);
  std::vector<void*> blocks;
  try {
    for (;;) blocks.push_back(seg->allocate(1000));
  } catch (const mpp::SegmentFull& e) {
    CHECK_THAT(e.what(), Catch::Contains("no room"));
  }
  CHECK(blocks.size() > 100);
  CHECK(seg->check_heap());
  auto before = blocks.size();
  for (void* p : blocks) seg->deallocate(p);
  CHECK(seg->free_bytes() > 200 * 1024);
  blocks.clear();
  // Freed blocks merge: all of the free space is one block again.
  void* whole = seg->allocate(seg->free_bytes() - 64);
  CHECK_THROWS_AS(seg->allocate(1000), mpp::SegmentFull);
  seg->deallocate(whole);
  for (std::size_t i = 0; i < before; ++i) blocks.push_back(seg->allocate(900 + i % 100));
  for (void* p : blocks) seg->deallocate(p);
  seg->deallocate(blocks.front());  // a double free is refused, not a corruption
  CHECK(seg->check_heap());
  void* big = seg->allocate(500);
  CHECK(big != nullptr);
  void* aligned = seg->allocate(64, 256);
  CHECK(reinterpret_cast<std::uintptr_t>(aligned) % 256 == 0);
  seg->deallocate(aligned);
  seg->deallocate(big);
}

// A free list's link overwritten from outside mpp (each kind of bad value the heap's one-compare
// checks must still refuse): the allocation that meets it repairs the lists from the chain
// and succeeds, and no live block is handed out or written to.
TEST_CASE("a planted free-list link is refused: the heap repairs itself and live blocks stay intact") {
  auto seg = Segment::anonymous(256 * 1024);
  void* probe = seg->allocate(16);
  const std::uint64_t first = seg->offset_of(probe) - mpp::detail::BLOCK_HEADER_BYTES;
  seg->deallocate(probe);
  struct Plant {
    const char* what;
    std::uint64_t (*link)(std::uint64_t live, std::uint64_t first, std::uint64_t other);
  };
  const Plant plants[] = {
      {"a live block", [](std::uint64_t live, std::uint64_t, std::uint64_t) { return live; }},
      {"below the heap", [](std::uint64_t, std::uint64_t first, std::uint64_t) { return first - 64; }},
      {"unaligned", [](std::uint64_t live, std::uint64_t, std::uint64_t) { return live + 8; }},
      {"past top", [](std::uint64_t, std::uint64_t, std::uint64_t) { return std::uint64_t{1} << 40; }},
      {"a free block of another class", [](std::uint64_t, std::uint64_t, std::uint64_t other) { return other; }},
  };
  for (const Plant& plant : plants) {
    INFO(plant.what);
    // live | freed | guard | other (freed, another class) | guard. 240 bytes make a block of
    // 256, the least of its class, so that an allocation of 240 takes it from its list.
    void* live = seg->allocate(240);
    void* freed = seg->allocate(240);
    void* guard = seg->allocate(240);
    void* other = seg->allocate(1000);
    void* guard2 = seg->allocate(240);
    std::memset(live, 0x5A, 240);
    seg->deallocate(other);
    seg->deallocate(freed);  // the head of its class, its links in its first 16 bytes
    auto* links = static_cast<mpp::detail::FreeLinks*>(freed);
    links->next.store(plant.link(seg->offset_of(live) - mpp::detail::BLOCK_HEADER_BYTES, first,
                                 seg->offset_of(other) - mpp::detail::BLOCK_HEADER_BYTES));
    void* got = seg->allocate(240);  // takes `freed`, meets the link, repairs, tries again
    CHECK(got != live);
    CHECK_FALSE(seg->read_only());
    CHECK(seg->check_heap());
    CHECK(std::all_of(static_cast<unsigned char*>(live), static_cast<unsigned char*>(live) + 240,
                      [](unsigned char c) { return c == 0x5A; }));
    for (void* p : {got, live, guard, guard2}) seg->deallocate(p);
    CHECK(seg->check_heap());
  }
}

TEST_CASE("allocate_zeroed gives zeros, from fresh space and from a reused block") {
  auto seg = Segment::anonymous(1 << 20);
  auto all_zero = [](const void* p, std::size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    return std::all_of(c, c + n, [](unsigned char b) { return b == 0; });
  };
  for (std::size_t align : {std::size_t{16}, std::size_t{256}}) {
    void* fresh = seg->allocate_zeroed(5000, align);
    CHECK(reinterpret_cast<std::uintptr_t>(fresh) % align == 0);
    CHECK(all_zero(fresh, 5000));
    std::memset(fresh, 0xA5, 5000);
    seg->deallocate(fresh);
    // The same size class serves the freed, dirty block again.
    void* reused = seg->allocate_zeroed(5000, align);
    CHECK(reused == fresh);
    CHECK(all_zero(reused, 5000));
    seg->deallocate(reused);
  }
  CHECK(seg->check_heap());
}

TEST_CASE("the directory finds by name, publishes whole objects and refuses other types") {
  auto seg = Segment::anonymous(1 << 20, 4);
  int constructed = 0;
  auto make = [&](void* p) {
    ++constructed;
    std::memset(p, 0x11, 64);
  };
  auto [a, created] = seg->find_or_create(spec("d", ObjectKind::dict, "int", "std::string"), make);
  CHECK(created);
  auto [b, again] = seg->find_or_create(spec("d", ObjectKind::dict, "int", "std::string"), make);
  CHECK_FALSE(again);
  CHECK(a == b);
  CHECK(constructed == 1);
  CHECK(seg->find(spec("d", ObjectKind::dict, "int", "std::string")) == a);
  CHECK(seg->find(spec("nope", ObjectKind::dict, "int", "std::string")) == nullptr);
  CHECK_THROWS_WITH(seg->find_or_create(spec("d", ObjectKind::dict, "std::string", "int"), make),
                    Catch::Contains("dict<int, std::string>") &&
                        Catch::Contains("dict<std::string, int>"));
  CHECK_THROWS_AS(seg->find(spec("d", ObjectKind::list, "", "int")), mpp::TypeMismatch);

  // A constructor that throws leaves no entry behind.
  CHECK_THROWS_AS(seg->find_or_create(spec("bad", ObjectKind::list, "", "int"),
                                      [](void*) { throw mpp::ValueError("no"); }),
                  mpp::ValueError);
  CHECK(seg->find(spec("bad", ObjectKind::list, "", "int")) == nullptr);

  auto [l1, c1] = seg->find_or_create(spec("", ObjectKind::lock, "", ""), make);
  auto [l2, c2] = seg->find_or_create(spec("", ObjectKind::lock, "", ""), make);
  CHECK((c1 && c2 && l1 != l2));
  // Past the 4 entries made at creation, the directory adds entries in the heap.
  auto [y, cy] = seg->find_or_create(spec("y", ObjectKind::list, "", "int"), make);
  auto [x, cx] = seg->find_or_create(spec("x", ObjectKind::list, "", "int"), make);
  CHECK((cy && cx && x != y));
  CHECK(seg->find(spec("x", ObjectKind::list, "", "int")) == x);
  CHECK(seg->find(spec("d", ObjectKind::dict, "int", "std::string")) == a);
  CHECK_THROWS_AS(seg->find_or_create(spec("big", ObjectKind::list, "", "int", 2 << 20), make),
                  mpp::SegmentFull);
  CHECK(seg->find(spec("big", ObjectKind::list, "", "int")) == nullptr);
}

TEST_CASE("SIGKILL inside allocate, 200 times: the heap is recovered, checked and still works") {
  // Each dead child leaves the blocks it held allocated: the segment may grow for them.
  auto seg = Segment::anonymous(4 << 20, 8, 32 << 20);
  std::mt19937 rng(12345);
  // At least 200 kills, and on until one of them landed inside the allocator's lock (where a
  // kill lands is chance: under ASan most of the loop's time is outside the lock).
  constexpr int kRounds = 200, kMaxRounds = 5000;
  for (int round = 0;
       round < kRounds || (seg->header().heap_recoveries.load() == 0 && round < kMaxRounds);
       ++round) {
    unsigned seed = rng();
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      void* held[16] = {};
      for (long i = 0;; ++i) {
        auto& slot = held[r() % 16];
        if (slot) {
          seg->deallocate(slot);
          slot = nullptr;
        } else {
          // Mostly small blocks, some that split and merge larger ones.
          slot = seg->allocate(r() % 8 == 0 ? 1 + r() % 8192 : 1 + r() % 256);
        }
        if (i == 64) mpp::test::signal_ready(ready_fd);
      }
    });
    REQUIRE(child.wait_ready());
    // A random moment in the child's loop (a spin, not a sleep: this is not synchronisation).
    volatile unsigned spin = 0;
    for (unsigned n = rng() % 20000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    void* p = seg->allocate(128);  // takes over the allocator's lock if the child held it
    std::memset(p, 0xab, 128);
    seg->deallocate(p);
    REQUIRE_FALSE(seg->read_only());
  }
  CHECK(seg->check_heap());
  CHECK(seg->header().heap_recoveries.load() > 0);
  INFO("recoveries: " << seg->header().heap_recoveries.load());
  std::vector<void*> more;
  for (int i = 0; i < 100; ++i) more.push_back(seg->allocate(1000));
  for (void* p : more) seg->deallocate(p);
  CHECK(seg->check_heap());
}

TEST_CASE("an unrelated process attaches by name (exec, not fork)") {
  auto name = unique_name("exec");
  auto seg = Segment::create(name, 1 << 20);
  auto out = run_helper("segment " + name);
  CHECK_THAT(out, Catch::StartsWith("ok creator=" + std::to_string(getpid())));
  CHECK(seg->check_heap());

  auto foreign = unique_name("exec-foreign");
  write_foreign(foreign, 4096, 'z');
  CHECK_THAT(run_helper("segment " + foreign), Catch::StartsWith("error: SegmentError"));
  shm_unlink(("/" + foreign).c_str());
  CHECK_THAT(run_helper("segment " + foreign), Catch::StartsWith("error: FileNotFoundError"));
}

TEST_CASE("a creator killed while building an object leaves no half-made entry") {
  auto seg = Segment::anonymous(1 << 20, 8);
  for (int round = 0; round < 20; ++round) {
    mpp::test::Child child([&](int ready_fd) {
      seg->find_or_create(spec("half", ObjectKind::dict, "int", "int", 256), [&](void* p) {
        std::memset(p, 0x77, 256);
        mpp::test::signal_ready(ready_fd);
        pause();  // dies here, holding the directory lock, its entry `building`
      });
    });
    REQUIRE(child.wait_ready());
    child.kill_and_reap();
    CHECK(seg->find(spec("half", ObjectKind::dict, "int", "int")) == nullptr);
    auto [p, created] = seg->find_or_create(spec("whole", ObjectKind::list, "", "int"), [](void*) {});
    CHECK(p != nullptr);
    CHECK(created == (round == 0));
  }
  // Each death is recovered by the next process that takes the directory lock (the next
  // round's child, or this last creation).
  auto [h, made] = seg->find_or_create(spec("half", ObjectKind::dict, "int", "int", 256), [](void*) {});
  CHECK(made);
  CHECK(h != nullptr);
  CHECK(seg->header().directory_mutex.recoveries() == 20);
  CHECK(seg->header().leaked.load() == 20 * 256);  // the dead creators' blocks, counted
  CHECK(seg->check_heap());
}

TEST_CASE("10,000 named objects: the directory has no cap, and an attacher finds them all") {
  auto name = unique_name("names");
  auto seg = Segment::create(name, 1 << 20);
  constexpr int kNames = 10'000;
  std::vector<void*> made;
  for (int i = 0; i < kNames; ++i) {
    auto [p, created] = seg->find_or_create(spec("obj-" + std::to_string(i), ObjectKind::value, "", "int", 64),
                                            [&](void* m) { std::memcpy(static_cast<char*>(m) + 56, &i, sizeof i); });
    REQUIRE(created);
    made.push_back(p);
  }
  auto other = Segment::attach(name);
  for (int i = 0; i < kNames; i += 7) {
    void* p = other->find(spec("obj-" + std::to_string(i), ObjectKind::value, "", "int"));
    REQUIRE(p != nullptr);
    int v = 0;
    std::memcpy(&v, static_cast<char*>(p) + 56, sizeof v);
    REQUIRE(v == i);
    REQUIRE(other->offset_of(p) == seg->offset_of(made[static_cast<std::size_t>(i)]));
  }
  CHECK(other->find(spec("obj-10000", ObjectKind::value, "", "int")) == nullptr);
  CHECK(seg->check_heap());
}

TEST_CASE("churn of random sizes from 1 B to 64 KiB: freed space serves every size, free_bytes tells the truth") {
  // The heap directly (a Manager dict churn is in manager_test): 1M allocate/free pairs.
  auto seg = Segment::anonymous(64 << 20);
  std::mt19937 rng(7);
  struct Slot {
    unsigned char* p = nullptr;
    std::size_t n = 0;
  };
  std::vector<Slot> slots(1000);
  auto size_of = [&] { return std::size_t{1} + rng() % (64 << 10); };
  for (int op = 0; op < 1'000'000; ++op) {
    Slot& s = slots[rng() % slots.size()];
    if (s.p) {
      REQUIRE((s.p[0] == static_cast<unsigned char>(s.n) &&
               (s.n == 1 || s.p[s.n - 1] == static_cast<unsigned char>(s.n >> 3))));
      seg->deallocate(s.p);
      s.p = nullptr;
    } else {
      s.n = size_of();
      s.p = static_cast<unsigned char*>(seg->allocate(s.n));
      s.p[s.n - 1] = static_cast<unsigned char>(s.n >> 3);
      s.p[0] = static_cast<unsigned char>(s.n);
    }
  }
  REQUIRE(seg->check_heap());
  // With the churn's survivors still live, a block of a quarter of the free bytes fits.
  void* quarter = seg->allocate(seg->free_bytes() / 4);
  seg->deallocate(quarter);
  // With everything freed, the whole heap is one block again: free_bytes() is the truth.
  for (Slot& s : slots) {
    if (s.p) seg->deallocate(s.p);
  }
  const std::size_t free = seg->free_bytes();
  CHECK(free > (63u << 20));
  void* all = seg->allocate(free - 64);
  CHECK_THROWS_AS(seg->allocate(64), mpp::SegmentFull);
  seg->deallocate(all);
  CHECK(seg->free_bytes() == free);
  CHECK(seg->check_heap());
}

namespace {
const char* g_heap_kill_at = nullptr;
void die_at_heap_point(const char* point) {
  if (g_heap_kill_at && std::strcmp(point, g_heap_kill_at) == 0) raise(SIGKILL);
}
}  // namespace

TEST_CASE("a process killed between any two stores of allocate or free leaves a sound heap") {
  // Each point is reached by the operation the child does; the parent then recovers the
  // lock, which rebuilds the free lists from the chain, and checks everything.
  struct Case {
    const char* point;
    bool free_first;  // the child frees (else allocates)
  };
  for (Case c : {Case{"heap:before-split", false}, Case{"heap:before-claim", false},
                 Case{"heap:before-top", false}, Case{"heap:before-release", true},
                 Case{"heap:before-merge-next", true}, Case{"heap:before-merge-prev", true},
                 Case{"heap:before-lower-top", true}}) {
    INFO(c.point);
    auto seg = Segment::anonymous(1 << 20);
    const std::size_t initial_free = seg->free_bytes();
    // a b c d e, with b and d free: freeing c merges it with both neighbours; freeing e
    // merges it with d and gives both back to never-used space.
    void* a = seg->allocate(3000);
    void* b = seg->allocate(5000);
    void* cblk = seg->allocate(7000);
    void* d = seg->allocate(9000);
    void* e = seg->allocate(2000);
    std::memset(a, 0x11, 3000);
    seg->deallocate(b);
    seg->deallocate(d);
    mpp::test::Child child([&](int) {
      g_heap_kill_at = c.point;
      Segment::crash_point = die_at_heap_point;
      if (!c.free_first) {
        // Splits the free block b, or (too large for any) carves never-used space.
        seg->allocate(std::strcmp(c.point, "heap:before-top") == 0 ? 100000 : 1000);
      } else {
        seg->deallocate(std::strcmp(c.point, "heap:before-lower-top") == 0 ? e : cblk);
      }
      _exit(3);
    });
    REQUIRE(child.exit_code() == -SIGKILL);
    void* p = seg->allocate(200);  // recovers: the free lists are rebuilt from the chain
    CHECK(seg->header().heap_recoveries.load() == 1);
    std::memset(p, 0x22, 200);
    CHECK(seg->check_heap());
    CHECK(std::all_of(static_cast<unsigned char*>(a), static_cast<unsigned char*>(a) + 3000,
                      [](unsigned char x) { return x == 0x11; }));
    // No point of these leaks: the child died before handing a block out, or before its
    // free was complete (then the block is still its own, or already free). Freeing what is
    // ours (a block the child already freed is refused) gives the whole heap back.
    seg->deallocate(p);
    seg->deallocate(a);
    seg->deallocate(cblk);
    seg->deallocate(e);
    CHECK(seg->check_heap());
    CHECK(seg->free_bytes() == initial_free);
    void* whole = seg->allocate(initial_free - 64);
    CHECK(whole != nullptr);
    seg->deallocate(whole);
    CHECK(seg->check_heap());
  }
}
