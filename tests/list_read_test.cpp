// The List's reads that write nothing shared (get, size, index, count, contains: a
// version-validated snapshot, docs/design/list-reads.md): readers never see a torn or an
// uncommitted element while writers are SIGKILLed mid-change, concurrent readers and
// writers keep every invariant, and a corrupt list gives SegmentError, never a signal.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/list.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"
#include "support/crash_step.hpp"

namespace {

using mpp::detail::Segment;
using Strings = std::vector<std::string>;

// Element c of the crash loop: its number, then a fill whose length and letter follow from
// it, so that any mix of two elements (or of an element and reused memory) fails `parse`.
std::string value_of(std::uint64_t c) {
  return std::to_string(c) + ':' + std::string(c % 61 + 1, static_cast<char>('a' + c % 26));
}

// The number of a whole element; false for anything else.
bool parse(const std::string& v, std::uint64_t& c) {
  const auto colon = v.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 20) return false;
  c = 0;
  for (std::size_t i = 0; i < colon; ++i) {
    if (v[i] < '0' || v[i] > '9') return false;
    c = c * 10 + static_cast<std::uint64_t>(v[i] - '0');
  }
  return v == value_of(c);
}

// Reads all of fd until EOF.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t got; (got = read(fd, buf, sizeof buf)) != 0;) {
    if (got < 0) {
      if (errno == EINTR) continue;
      break;
    }
    out.append(buf, static_cast<std::size_t>(got));
  }
  return out;
}

void write_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) _exit(98);
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
constexpr int kKillRounds = 150;  // a fork costs ~20 ms under ASan
constexpr int kReads = 30000;     // and a read ~50 times as much
#else
constexpr int kKillRounds = 400;
constexpr int kReads = 300000;
#endif

TEST_CASE("readers never see a torn or uncommitted List element while writers are SIGKILLed mid-change") {
  auto seg = Segment::anonymous(std::size_t{8} << 20);
  auto l = mpp::List<std::string>::open(seg, "l");
  mpp::test::SharedMapping<std::atomic<int>> stop(0);

  // Readers: random element reads (positive and negative indexes), sizes and searches, in
  // their own processes, until stopped; then they send back how many reads failed to parse
  // and the number of every element they saw.
  struct Reader {
    std::unique_ptr<mpp::test::Child> child;
    int results = -1;
  };
  std::vector<Reader> readers(2);
  for (unsigned k = 0; k < readers.size(); ++k) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    readers[k].results = fds[0];
    readers[k].child = std::make_unique<mpp::test::Child>([&, k, out = fds[1], in = fds[0]](int ready_fd) {
      close(in);
      std::mt19937 r(100 + k);
      std::unordered_set<std::uint64_t> seen;
      std::uint64_t torn = 0, reads = 0;
      mpp::test::signal_ready(ready_fd);
      while (stop->load(std::memory_order_relaxed) == 0) {
        const auto n = static_cast<long long>(l.size());
        if (n == 0) continue;
        long long i = static_cast<long long>(r() % static_cast<unsigned>(n));
        if (r() % 2) i -= n;
        std::string v;
        try {
          v = l.get(i);
        } catch (const mpp::IndexError&) {
          continue;  // a writer shrank the list since size()
        }
        ++reads;
        std::uint64_t c;
        if (!parse(v, c)) {
          ++torn;
          continue;
        }
        seen.insert(c);
        if (reads % 16 == 0) {
          (void)l.contains(v);
          (void)l.count(v);
          try {
            (void)l.index(v);
          } catch (const mpp::ValueError&) {
          }
        }
      }
      write_all(out, &torn, sizeof torn);
      write_all(out, &reads, sizeof reads);
      for (std::uint64_t c : seen) write_all(out, &c, sizeof c);
      close(out);
    });
    close(fds[1]);
    REQUIRE(readers[k].child->wait_ready());
  }

  // The writer logs each change's new elements (their count, then their numbers) before it
  // starts it, and kills itself at a random store.
  int log[2];
  REQUIRE(pipe(log) == 0);
  REQUIRE(fcntl(log[0], F_SETFL, O_NONBLOCK) == 0);
  std::unordered_set<std::uint64_t> committed;
  std::mt19937 rng(77);
  std::uint64_t next = 0;
  int kills = 0, in_flight_committed = 0;
  for (int round = 0; round < kKillRounds; ++round) {
    const unsigned seed = rng();
    const long store = 1 + static_cast<long>(rng() % 300);
    const std::uint64_t first = next;
    kills += mpp::test::killed_at_store(store, [&] {
      std::mt19937 r(seed);
      std::uint64_t c = first;
      for (;;) {
        const auto n = static_cast<long long>(l.size());
        unsigned kind = r() % 6;
        if (n > 60) kind = 6 + r() % 2;  // shrink: pop or clear
        std::uint64_t fresh = kind == 3 ? 3 : kind <= 2 ? 1 : 0;
        if (kind == 1 && n == 0) kind = 0;
        write_all(log[1], &fresh, sizeof fresh);
        for (std::uint64_t j = 0; j < fresh; ++j) write_all(log[1], &(c += 1), sizeof c);
        const auto at = [&] { return static_cast<long long>(r() % static_cast<unsigned>(n)); };
        switch (kind) {
          case 0: l.append(value_of(c)); break;
          case 1: n > 0 ? l.set(at(), value_of(c)) : l.append(value_of(c)); break;
          case 2: l.insert(n > 0 ? at() : 0, value_of(c)); break;
          case 3: l.extend(Strings{value_of(c - 2), value_of(c - 1), value_of(c)}); break;
          case 4:
          case 6: if (n > 0) l.pop(at()); break;
          case 5: if (n > 0) l.remove(l.get(at())); break;
          default: l.clear(); break;
        }
      }
    });
    // Every change the writer finished is committed; the one it was killed in is committed
    // when its elements are in the recovered list.
    std::vector<std::vector<std::uint64_t>> changes;
    std::string bytes;
    char buf[4096];
    for (ssize_t got; (got = read(log[0], buf, sizeof buf)) > 0;) bytes.append(buf, static_cast<std::size_t>(got));
    REQUIRE(bytes.size() % 8 == 0);
    std::vector<std::uint64_t> words(bytes.size() / 8);
    std::memcpy(words.data(), bytes.data(), bytes.size());
    for (std::size_t w = 0; w < words.size();) {
      const std::uint64_t k = words[w++];
      REQUIRE(w + k <= words.size());
      changes.emplace_back(words.begin() + static_cast<long>(w), words.begin() + static_cast<long>(w + k));
      w += k;
    }
    const Strings now = l.to_vector();  // recovers, if no reader did first
    std::unordered_set<std::string> present(now.begin(), now.end());
    for (std::size_t ch = 0; ch < changes.size(); ++ch) {
      for (std::uint64_t c : changes[ch]) {
        next = std::max(next, c);
        if (ch + 1 < changes.size() || present.count(value_of(c))) {
          committed.insert(c);
          in_flight_committed += ch + 1 == changes.size();
        }
      }
    }
    INFO("round " << round);
    for (const auto& v : now) {
      std::uint64_t c;
      REQUIRE(parse(v, c));
      REQUIRE(committed.count(c) == 1);
    }
    REQUIRE(l.check().empty());
  }
  stop->store(1);
  std::uint64_t torn = 0, reads = 0, uncommitted = 0;
  for (auto& rd : readers) {
    const std::string out = read_all(rd.results);
    close(rd.results);
    CHECK(rd.child->exit_code() == 0);
    REQUIRE(out.size() >= 16);
    REQUIRE(out.size() % 8 == 0);
    std::vector<std::uint64_t> words(out.size() / 8);
    std::memcpy(words.data(), out.data(), out.size());
    torn += words[0];
    reads += words[1];
    for (std::size_t w = 2; w < words.size(); ++w) uncommitted += committed.count(words[w]) == 0;
  }
  close(log[0]);
  close(log[1]);
  CHECK(kills == kKillRounds);
  CHECK(in_flight_committed > 0);  // some kills landed after a change's commit
  CHECK(reads > 1000);
  CHECK(torn == 0);
  CHECK(uncommitted == 0);
  CHECK(seg->check_heap());
}

TEST_CASE("processes read a List while others set, insert, append and pop: every read is right") {
  // Elements 0..63 hold i * kStride + version (element 0 never changes); past 63 the list
  // grows and shrinks (array copies on insert and growth, in-place shifts on pop).
  constexpr long kStride = 1'000'000'000;
  constexpr long kFixed = 64;
  mpp::Manager m(std::size_t{4} << 20);
  auto l = m.list<long>("l");
  for (long i = 0; i < kFixed; ++i) l.append(i * kStride);
  std::vector<std::unique_ptr<mpp::test::Child>> writers;
  for (int w = 0; w < 2; ++w) {
    writers.push_back(std::make_unique<mpp::test::Child>([&, w](int ready_fd) {
      mpp::test::signal_ready(ready_fd);
      std::mt19937 r(w);
      for (long ver = 1;; ++ver) {
        const long i = 1 + static_cast<long>(r() % (kFixed - 1));
        l.set(i, i * kStride + ver * 2 + w);
      }
    }));
  }
  writers.push_back(std::make_unique<mpp::test::Child>([&](int ready_fd) {
    mpp::test::signal_ready(ready_fd);
    std::mt19937 r(9);
    for (long j = 0;; ++j) {
      const auto n = static_cast<long>(l.size());
      const long tail = n - kFixed;
      if (tail > 200) {
        l.pop(kFixed + static_cast<long>(r() % static_cast<unsigned>(tail)));
      } else if (r() % 2) {
        l.append((kFixed + j) * kStride);
      } else {
        l.insert(kFixed + static_cast<long>(r() % static_cast<unsigned>(tail + 1)), (kFixed + j) * kStride);
      }
    }
  }));
  for (auto& w : writers) REQUIRE(w->wait_ready());

  std::vector<std::unique_ptr<mpp::test::Child>> readers;
  for (int k = 0; k < 2; ++k) {
    readers.push_back(std::make_unique<mpp::test::Child>([&, k](int) {
      std::mt19937 r(50 + k);
      for (int t = 0; t < kReads; ++t) {
        const long i = static_cast<long>(r() % kFixed);
        const long v = l.get(i);
        if (v / kStride != i) throw std::runtime_error("element " + std::to_string(i) + " read as " + std::to_string(v));
        if (l.size() < static_cast<std::size_t>(kFixed)) throw std::runtime_error("the list shrank below its fixed part");
        if (l.get(-1) / kStride < kFixed - 1) throw std::runtime_error("a wrong last element");
        if (t % 64 == 0) {
          if (l.index(0) != 0 || l.count(0) != 1 || !l.contains(0)) throw std::runtime_error("element 0 not found");
          if (l.contains(-5) || l.count(-5) != 0) throw std::runtime_error("found an element never added");
        }
      }
    }));
  }
  for (auto& rd : readers) CHECK(rd->exit_code() == 0);
  for (auto& w : writers) w->kill_and_reap();
  CHECK(l.check().empty());
  const auto all = l.to_vector();
  REQUIRE(all.size() >= static_cast<std::size_t>(kFixed));
  for (long i = 0; i < kFixed; ++i) CHECK(all[static_cast<std::size_t>(i)] / kStride == i);
}

TEST_CASE("List reads: contains, index past start, negative indexes, empty lists") {
  mpp::Manager m(std::size_t{1} << 20);
  auto l = m.list<std::string>("s");
  CHECK(l.size() == 0);
  CHECK_FALSE(l.contains("a"));
  CHECK(l.count("a") == 0);
  CHECK_THROWS_AS(l.index("a"), mpp::ValueError);
  CHECK_THROWS_AS(l.get(0), mpp::IndexError);
  CHECK_THROWS_AS(l.get(-1), mpp::IndexError);
  const std::string big(5000, 'z');
  l.extend(Strings{"a", "", big, "a", std::string(16, 'q'), std::string(17, 'r')});
  CHECK(l.size() == 6);
  CHECK(l.get(1).empty());
  CHECK(l.get(2) == big);
  CHECK(l.get(-2) == std::string(16, 'q'));
  CHECK(l[-1] == std::string(17, 'r'));
  CHECK_THROWS_WITH(l.get(6), Catch::Contains("out of range: 6 in a list of 6"));
  CHECK_THROWS_WITH(l.get(-7), Catch::Contains("out of range: -7 in a list of 6"));
  CHECK(l.contains(""));
  CHECK(l.contains(big));
  CHECK_FALSE(l.contains("b"));
  CHECK(l.count("a") == 2);
  CHECK(l.index("a") == 0);
  CHECK(l.index("a", 1) == 3);
  CHECK_THROWS_AS(l.index("a", 4), mpp::ValueError);
  CHECK_THROWS_AS(l.index("a", 100), mpp::ValueError);

  struct Big {
    long a[5];
  };
  auto b = m.list<Big>("b");
  b.append(Big{{1, 2, 3, 4, 5}});
  CHECK(b.get(0).a[4] == 5);
  CHECK(b.contains(Big{{1, 2, 3, 4, 5}}));
}

namespace {

mpp::detail::ListState* list_state(mpp::Manager& m, const std::string& name) {
  Segment::ObjectSpec spec{name, mpp::detail::ObjectKind::list, "", mpp::detail::type_fingerprint<long>(),
                           sizeof(mpp::detail::ListState), alignof(mpp::detail::ListState)};
  return static_cast<mpp::detail::ListState*>(mpp::detail::Access::segment(m)->find(spec));
}

}  // namespace

TEST_CASE("a corrupt List gives SegmentError or a check() finding from every read, never a signal") {
  mpp::Manager m(std::size_t{2} << 20);
  auto l = m.list<long>("c");
  for (long i = 0; i < 100; ++i) l.append(i);
  auto* st = list_state(m, "c");
  REQUIRE(st != nullptr);
  auto& seg = *mpp::detail::Access::segment(m);
  auto* a = seg.at<mpp::detail::ListArray>(st->array.load());
  auto* item5 = seg.at<mpp::detail::ListItem>(a->items[5].load());
  const std::uint64_t heap_end = seg.header().heap_offset + seg.header().heap_size;
  struct Damage {
    const char* name;
    std::uint64_t* field;
    std::uint64_t bad;
  };
  const std::vector<Damage> damages = {
      {"the array offset past the heap", reinterpret_cast<std::uint64_t*>(&st->array), heap_end + 4096},
      {"the array offset odd", reinterpret_cast<std::uint64_t*>(&st->array), st->array.load() + 8},
      {"the array's capacity", &a->capacity, std::uint64_t{1} << 50},
      {"the array's size past its capacity", reinterpret_cast<std::uint64_t*>(&a->size), a->capacity + 1},
      {"an element offset past the heap", reinterpret_cast<std::uint64_t*>(&a->items[5]), heap_end - 8},
      {"an element offset odd", reinterpret_cast<std::uint64_t*>(&a->items[5]), a->items[5].load() + 4},
      {"an element's length", reinterpret_cast<std::uint64_t*>(&item5->len), ~std::uint64_t{0}},
  };
  for (const auto& dmg : damages) {
    INFO(dmg.name);
    const std::uint64_t saved = *dmg.field;
    *dmg.field = dmg.bad;
    int errors = 0;
    auto attempt = [&](auto&& f) {
      try {
        f();
      } catch (const mpp::SegmentError& e) {
        CHECK_THAT(e.what(), Catch::Contains("'c'"));
        ++errors;
      }
    };
    for (long k : {0L, 5L, 99L, -1L}) attempt([&] { (void)l.get(k); });
    attempt([&] { (void)l.size(); });
    attempt([&] { (void)l.count(5); });
    attempt([&] { (void)l.contains(1000); });
    attempt([&] { (void)l.index(99); });
    CHECK(errors > 0);
    CHECK_FALSE(l.check().empty());
    *dmg.field = saved;
    CHECK(l.check().empty());
  }
  CHECK(l.get(5) == 5);
  CHECK(l.size() == 100);
}

TEST_CASE("readers never see a half-copied in-place set of a string while a writer loops") {
  // Every element is 100 copies of one letter; the writer replaces them in place (staged in
  // the scratch block, copied in two halves) as fast as it can, so readers keep meeting the
  // copy half done and the writer keeps re-taking the list; each read must be one letter.
  mpp::Manager m(std::size_t{4} << 20);
  auto l = m.list<std::string>("s");
  for (int i = 0; i < 16; ++i) l.append(std::string(100, 'a'));
  mpp::test::Child writer([&](int ready_fd) {
    mpp::test::signal_ready(ready_fd);
    for (long v = 1;; ++v) l.set(v % 16, std::string(100, static_cast<char>('a' + v % 26)));
  });
  REQUIRE(writer.wait_ready());
  int torn = 0;
  for (int t = 0; t < kReads && torn == 0; ++t) {
    const std::string s = l.get(t % 16);
    if (s.size() != 100 || s.find_first_not_of(s[0]) != std::string::npos) ++torn;
  }
  writer.kill_and_reap();
  CHECK(torn == 0);
  CHECK(l.check().empty());  // the writer was killed anywhere, maybe mid-copy: recovered
  for (int i = 0; i < 16; ++i) {
    const std::string s = l.get(i);
    CHECK(s.find_first_not_of(s[0]) == std::string::npos);
  }
}

TEST_CASE("a reader that died asking the writers for a gap holds up one writer once") {
  mpp::Manager m(std::size_t{1} << 20);
  auto l = m.list<long>("g");
  l.append(1);
  auto* st = list_state(m, "g");
  REQUIRE(st != nullptr);
  mpp::detail::ask_for_gap(st->readers);  // and never gives it back, as a killed reader would
  l.set(0, 2);
  CHECK(st->readers.gap_wanted.load() == 0);  // the writer waited its bound and cleared it
  l.set(0, 3);
  CHECK(l.get(0) == 3);
}
