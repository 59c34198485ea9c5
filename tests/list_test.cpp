#include "mpp/list.hpp"

#include <signal.h>
#include <unistd.h>

#include <fcntl.h>

#include <catch2/catch.hpp>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"
#include "support/crash_step.hpp"

TEST_CASE("List has Python's list methods") {
  mpp::Manager m(std::size_t{1} << 20);
  auto l = m.list<int>("l");
  CHECK(l.empty());
  l.append(1);
  l.append(2);
  l.extend({3, 4, 5});
  CHECK(l.to_vector() == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(l.get(0) == 1);
  CHECK(l.get(-1) == 5);
  CHECK(l[-2] == 4);
  CHECK_THROWS_AS(l.get(5), mpp::IndexError);
  CHECK_THROWS_AS(l.get(-6), mpp::IndexError);
  l.set(-1, 50);
  CHECK(l.get(4) == 50);
  CHECK_THROWS_AS(l.set(5, 0), mpp::IndexError);
  CHECK_THROWS_AS(l.set(-6, 0), mpp::IndexError);
  CHECK(l.to_vector() == std::vector<int>{1, 2, 3, 4, 50});
  l.insert(0, 0);
  l.insert(-1, 40);     // before the last, as in Python
  l.insert(100, 60);    // clamps to the end
  CHECK(l.to_vector() == std::vector<int>{0, 1, 2, 3, 4, 40, 50, 60});
  CHECK(l.pop() == 60);
  CHECK(l.pop(0) == 0);
  CHECK(l.pop(2) == 3);
  CHECK(l.to_vector() == std::vector<int>{1, 2, 4, 40, 50});
  l.append(2);
  CHECK(l.count(2) == 2);
  CHECK(l.index(2) == 1);
  CHECK(l.index(2, 2) == 5);
  CHECK_THROWS_AS(l.index(99), mpp::ValueError);
  l.remove(2);
  CHECK(l.to_vector() == std::vector<int>{1, 4, 40, 50, 2});
  CHECK_THROWS_AS(l.remove(99), mpp::ValueError);
  int sum = 0;
  l.for_each([&](const int& v) { sum += v; });
  CHECK(sum == 97);
  CHECK(l.read().view(-1) == 2);
  l.clear();
  CHECK(l.size() == 0);
  CHECK_THROWS_AS(l.pop(), mpp::IndexError);
  CHECK(l.check().empty());

  auto s = m.list<std::string>("s");
  s.extend(std::vector<std::string>{"a", "bb", "ccc"});
  auto r = s.read();
  std::string_view v = r.view(1);
  CHECK(v == "bb");
}

TEST_CASE("a full segment is SegmentFull and leaves the list unchanged") {
  mpp::Manager m(std::size_t{256} << 10);
  auto l = m.list<std::string>("l");
  std::size_t n = 0;
  try {
    for (;; ++n) l.append(std::string(1000, 'x'));
  } catch (const mpp::SegmentFull&) {
  }
  CHECK(l.size() == n);
  CHECK_THROWS_AS(l.extend(std::vector<std::string>(10, std::string(5000, 'y'))), mpp::SegmentFull);
  CHECK(l.size() == n);
  CHECK(l.check().empty());
  l.pop();
  l.append("ok");
  CHECK(l.get(-1) == "ok");
}

TEST_CASE("processes append concurrently and nothing is lost") {
  mpp::Manager m(std::size_t{2} << 20);
  auto l = m.list<int>("l");
  std::vector<std::unique_ptr<mpp::test::Child>> kids;
  for (int p = 0; p < 4; ++p) {
    kids.push_back(std::make_unique<mpp::test::Child>([&, p](int) {
      for (int i = 0; i < 1000; ++i) l.append(p * 1000 + i);
    }));
  }
  for (auto& k : kids) CHECK(k->exit_code() == 0);
  auto v = l.to_vector();
  std::sort(v.begin(), v.end());
  std::vector<int> want(4000);
  for (int i = 0; i < 4000; ++i) want[i] = i;
  CHECK(v == want);
}

TEST_CASE("SIGKILL of a child changing a list, 200 times: the list is valid and usable") {
  mpp::Manager m(std::size_t{4} << 20);
  auto l = m.list<std::string>("l");
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    const unsigned seed = rng();
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      for (long i = 0;; ++i) {
        const auto n = static_cast<long long>(l.size());
        switch (r() % 6) {
          case 0: l.append(std::string(r() % 100, 'a')); break;
          case 1: l.extend(std::vector<std::string>{"x", "yy", "zzz"}); break;
          case 2: if (n > 0) l.insert(static_cast<long long>(r() % n), "ins"); break;
          case 3: if (n > 0) l.pop(static_cast<long long>(r() % n)); break;
          case 4: if (n > 0) l.set(static_cast<long long>(r() % n), "set"); break;
          default: if (n > 400) l.clear(); break;
        }
        if (i == 20) mpp::test::signal_ready(ready_fd);
      }
    });
    REQUIRE(child.wait_ready());
    volatile unsigned spin = 0;
    for (unsigned n = rng() % 30000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    INFO("round " << round);
    REQUIRE(l.check().empty());
    l.append("after");
    REQUIRE(l.get(-1) == "after");
  }
  CHECK(mpp::detail::Access::segment(m)->check_heap());
}

namespace {

using Strings = std::vector<std::string>;
using mpp::detail::Segment;

struct ListMutation {
  const char* name;
  int initial;  // elements before it ("e0", "e1", ...); extend() makes capacity 8 for <= 8
  std::function<void(mpp::List<std::string>&)> run;
  std::function<void(Strings&)> model;
  long min_stores = 4;  // the mutation has at least this many stores to kill between
  std::size_t width = 0;  // elements padded to this many bytes (0: none)
  std::function<void(mpp::List<std::string>&)> setup = nullptr;  // before the kill, unchanged
};

// Element i of a case's starting list: "e<i>", padded with dots to `width` bytes.
std::string element(int i, std::size_t width) {
  std::string e = "e" + std::to_string(i);
  if (e.size() < width) e.resize(width, '.');
  return e;
}

}  // namespace

TEST_CASE("a list change killed before any one of its stores is recovered to before or after") {
  const std::vector<ListMutation> cases = {
      {"pop(0)", 5, [](auto& l) { l.pop(0); }, [](Strings& v) { v.erase(v.begin()); }},
      {"pop(2)", 5, [](auto& l) { l.pop(2); }, [](Strings& v) { v.erase(v.begin() + 2); }},
      {"pop()", 5, [](auto& l) { l.pop(); }, [](Strings& v) { v.pop_back(); }},
      {"pop() of the only element", 1, [](auto& l) { l.pop(); }, [](Strings& v) { v.pop_back(); }},
      {"remove", 5, [](auto& l) { l.remove("e1"); }, [](Strings& v) { v.erase(v.begin() + 1); }},
      {"insert(0)", 5, [](auto& l) { l.insert(0, "new"); }, [](Strings& v) { v.insert(v.begin(), "new"); }},
      {"insert(2) into a full array", 8, [](auto& l) { l.insert(2, "new"); },
       [](Strings& v) { v.insert(v.begin() + 2, "new"); }},
      {"append", 5, [](auto& l) { l.append("new"); }, [](Strings& v) { v.push_back("new"); }},
      {"append to an empty list", 0, [](auto& l) { l.append("new"); }, [](Strings& v) { v.push_back("new"); }},
      {"append growing the array", 8, [](auto& l) { l.append("new"); }, [](Strings& v) { v.push_back("new"); }},
      {"extend", 3, [](auto& l) { l.extend(Strings{"x", "y", "z"}); },
       [](Strings& v) { v.insert(v.end(), {"x", "y", "z"}); }},
      {"extend growing the array", 7, [](auto& l) { l.extend(Strings{"x", "y", "z"}); },
       [](Strings& v) { v.insert(v.end(), {"x", "y", "z"}); }},
      {"set(1)", 5, [](auto& l) { l.set(1, "new"); }, [](Strings& v) { v[1] = "new"; }},
      // Same length: written into the element's item. Two bytes: one store.
      {"set(1) in place, 2 bytes", 5, [](auto& l) { l.set(1, "zz"); }, [](Strings& v) { v[1] = "zz"; }, 1},
      // 100 bytes: staged in the scratch block (allocated by this first set), then copied.
      {"set(1) in place, 100 bytes, first", 5, [](auto& l) { l.set(1, std::string(100, 'n')); },
       [](Strings& v) { v[1] = std::string(100, 'n'); }, 4, 100},
      {"set(1) in place, 100 bytes, scratch block there", 5, [](auto& l) { l.set(1, std::string(100, 'n')); },
       [](Strings& v) { v[1] = std::string(100, 'n'); }, 4, 100,
       [](auto& l) { l.set(3, element(3, 100)); }},
      // 400 bytes: a larger scratch block replaces the 256-byte one, then the copy.
      {"set(1) in place, 400 bytes, scratch block too small", 5, [](auto& l) { l.set(1, std::string(400, 'n')); },
       [](Strings& v) { v[1] = std::string(400, 'n'); }, 4, 400,
       // replaced (other length), set in place (a 256-byte scratch block), replaced back
       [](auto& l) { l.set(3, std::string(100, 'm')); l.set(3, std::string(100, 'k')); l.set(3, element(3, 400)); }},
      {"clear", 6, [](auto& l) { l.clear(); }, [](Strings& v) { v.clear(); }},
  };
  for (const auto& c : cases) {
    long n = 1;
    for (;; ++n) {
      auto seg = Segment::anonymous(1 << 20);
      auto l = mpp::List<std::string>::open(seg, "l");
      Strings before;
      for (int i = 0; i < c.initial; ++i) before.push_back(element(i, c.width));
      l.extend(before);
      if (c.setup) c.setup(l);
      REQUIRE(l.to_vector() == before);
      Strings after = before;
      c.model(after);
      const bool killed = mpp::test::killed_at_store(n, [&] { c.run(l); });
      INFO(c.name << ", killed before store " << n);
      const Strings got = l.to_vector();  // recovers
      if (!killed) {
        REQUIRE(got == after);
        break;
      }
      REQUIRE((got == before || got == after));
      REQUIRE(l.check().empty());
      REQUIRE(seg->check_heap());
      // At most the one block that was in flight: an item, or a scratch block (its header
      // and the width rounded up to 256 bytes).
      CHECK(l.leaked_bytes() <= std::max<std::size_t>(256, sizeof(mpp::detail::ScratchBlock) + c.width + 255));
      l.append("next");
      REQUIRE(l.get(-1) == "next");
      REQUIRE(l.check().empty());
    }
    INFO(c.name);
    CHECK(n > c.min_stores);  // the hook was reached: there were stores to kill between
  }
}

namespace {

// One random change of the loop below, drawn from `r` and the list's size, so that the
// parent can replay what a killed child did.
struct RandomChange {
  int kind = 0;  // 0 append, 1 insert, 2 pop, 3 extend, 4 clear, 5 set, 6 set in place
  std::uint64_t index = 0;
  Strings values;
};

RandomChange draw(std::mt19937& r, std::size_t size, long& counter) {
  RandomChange c;
  c.kind = static_cast<int>(r() % 6);
  if (c.kind == 4) c.kind = 6;
  if (size > 40 && r() % 4 == 0) c.kind = 4;
  if (size == 0 && c.kind != 0 && c.kind != 1 && c.kind != 3) c.kind = 0;
  c.index = size ? r() % size : 0;
  for (int i = 0, k = c.kind == 3 ? 3 : 1; i < k; ++i) c.values.push_back("v" + std::to_string(counter++));
  return c;
}

// `v` cut or padded to the length of `old`: a set of it is done in place.
std::string same_length(std::string v, const std::string& old) {
  v.resize(old.size(), '-');
  return v;
}

void apply_change(mpp::List<std::string>& l, const RandomChange& c) {
  switch (c.kind) {
    case 0: l.append(c.values[0]); break;
    case 1: l.insert(static_cast<long long>(c.index), c.values[0]); break;
    case 2: l.pop(static_cast<long long>(c.index)); break;
    case 3: l.extend(c.values); break;
    case 4: l.clear(); break;
    case 5: l.set(static_cast<long long>(c.index), c.values[0]); break;
    default: l.set(static_cast<long long>(c.index), same_length(c.values[0], l.get(static_cast<long long>(c.index)))); break;
  }
}

void apply_change(Strings& v, const RandomChange& c) {
  switch (c.kind) {
    case 0: v.push_back(c.values[0]); break;
    case 1: v.insert(v.begin() + static_cast<long>(c.index), c.values[0]); break;
    case 2: v.erase(v.begin() + static_cast<long>(c.index)); break;
    case 3: v.insert(v.end(), c.values.begin(), c.values.end()); break;
    case 4: v.clear(); break;
    case 5: v[c.index] = c.values[0]; break;
    default: v[c.index] = same_length(c.values[0], v[c.index]); break;
  }
}

}  // namespace

// Under AddressSanitizer a fork costs ~20 ms (the shadow memory's page tables): the
// sanitizer run checks the same paths with fewer kills, within the watchdog's minute.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kRandomKills = 1000;
#else
constexpr int kRandomKills = 5000;
#endif

TEST_CASE("5,000 SIGKILLs at random stores of list changes: every committed element stays") {
  auto seg = Segment::anonymous(std::size_t{8} << 20);
  auto l = mpp::List<std::string>::open(seg, "l");
  int log[2];  // the child writes one byte before each change it starts
  REQUIRE(pipe(log) == 0);
  REQUIRE(fcntl(log[0], F_SETFL, O_NONBLOCK) == 0);
  Strings model;
  std::mt19937 rng(2024);
  long counter = 0;
  int kills = 0, in_flight_done = 0, mismatches = 0;
  for (int round = 0; round < kRandomKills; ++round) {
    const unsigned seed = rng();
    const long store = 1 + static_cast<long>(rng() % 400);
    const long first = counter;
    const bool killed = mpp::test::killed_at_store(store, [&] {
      std::mt19937 r(seed);
      long cnt = first;
      for (;;) {
        RandomChange c = draw(r, l.size(), cnt);
        if (write(log[1], "x", 1) != 1) _exit(98);
        apply_change(l, c);
      }
    });
    kills += killed;
    char buf[4096];
    long started = 0;
    for (ssize_t got; (got = read(log[0], buf, sizeof buf)) > 0;) started += got;
    std::mt19937 r(seed);
    for (long i = 0; i + 1 < started; ++i) apply_change(model, draw(r, model.size(), counter));
    Strings before = model, after = model;
    if (started > 0) apply_change(after, draw(r, model.size(), counter));
    const Strings got = l.to_vector();  // recovers
    if (got == after && started > 0) ++in_flight_done;
    if (got != before && got != after) {
      ++mismatches;
      FAIL_CHECK("round " << round << ": the list is neither before nor after the killed change");
      break;
    }
    model = got;
    const std::string problem = l.check();
    if (!problem.empty()) FAIL("round " << round << ": " << problem);
  }
  close(log[0]);
  close(log[1]);
  CHECK(kills == kRandomKills);  // every child died at its store (none can finish: they loop)
  CHECK(mismatches == 0);
  CHECK(in_flight_done > 0);  // some kills landed after a change's commit store
  CHECK(in_flight_done < kRandomKills);  // and some before it
  CHECK(seg->check_heap());
  l.append("last");
  CHECK(l.get(-1) == "last");
}
