// Value<T> and Array<T> across real processes: exact totals under contention (under the lock,
// with fetch_add, with the bare atomic), zero-copy spans, bounds, and kills inside set_value.
#include "mpp/value.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <numeric>
#include <vector>

#include "mpp/array.hpp"
#include "mpp/errors.hpp"
#include "support/child.hpp"
#include "support/processes.hpp"

using mpp::test::Child;
using mpp::test::signal_ready;
using mpp::test::all_zero;
using mpp::test::run_children;
using mpp::test::until;

namespace {

struct Triple {
  std::int64_t a, b, c;  // written together; a torn write would make them differ
};

constexpr int kProcs = 4;
constexpr int kIters = 20000;

}  // namespace

TEST_CASE("Value: N processes x M increments under get_lock() give the exact total") {
  mpp::Value<long> v(0);
  auto codes = run_children(kProcs, [&](int) {
    for (int i = 0; i < kIters; ++i) {
      auto g = v.get_lock().guard();  // Python: with v.get_lock(): v.value += 1
      v.set_value(v.value() + 1);     // the lock is recursive: value() inside is fine
    }
  });
  CHECK(all_zero(codes));
  CHECK(v.value() == long{kProcs} * kIters);
}

TEST_CASE("Value: N processes x M fetch_add give the exact total, mixed with get_lock() sections") {
  mpp::Value<std::int32_t> v;
  auto codes = run_children(kProcs, [&](int who) {
    for (int i = 0; i < kIters; ++i) {
      if (who % 2 == 0) {
        v.fetch_add(1);
      } else {
        auto g = v.get_lock().guard();
        v.set_value(v.value() + 1);
      }
    }
  });
  CHECK(all_zero(codes));
  CHECK(v.value() == kProcs * kIters);
  CHECK(v.fetch_sub(kProcs * kIters) == kProcs * kIters);
  CHECK(v.value() == 0);
}

TEST_CASE("Value: the bare atomic_ref() gives the exact total too") {
  mpp::Value<std::uint64_t> v(7);
  auto codes = run_children(kProcs, [&](int) {
    for (int i = 0; i < kIters; ++i) v.atomic_ref().fetch_add(1);
  });
  CHECK(all_zero(codes));
  CHECK(v.value() == 7u + std::uint64_t{kProcs} * kIters);
}

TEST_CASE("Value: integers wrap around as std::atomic's do, doubles add") {
  mpp::Value<std::int8_t> small(127);
  CHECK(small.fetch_add(1) == 127);
  CHECK(small.value() == -128);
  mpp::Value<double> d(0.5);
  d.fetch_add(0.25);
  CHECK(d.value() == 0.75);
  mpp::Value<char> c('a');
  c.fetch_add(1);
  CHECK(c.value() == 'b');
}

TEST_CASE("Value: a large value SIGKILLed inside set_value() is never torn") {
  mpp::Value<Triple> v(Triple{0, 0, 0});
  for (int round = 0; round < 200; ++round) {
    Child writer([&](int ready) {
      signal_ready(ready);
      for (std::int64_t i = 1;; ++i) v.set_value(Triple{i, i, i});
    });
    REQUIRE(writer.wait_ready());
    sched_yield();
    writer.kill_and_reap();
    Triple t = v.value();  // the lock may need recovering: it must not block
    CHECK(t.a == t.b);
    CHECK(t.b == t.c);
  }
}

TEST_CASE("Value: a holder of get_lock() SIGKILLed is recovered by the next value()") {
  mpp::Value<int> v(1);
  for (int round = 0; round < 50; ++round) {
    Child holder([&](int ready) {
      v.get_lock().acquire();
      v.set_value(v.value() + 1);
      signal_ready(ready);
      pause();
    });
    REQUIRE(holder.wait_ready());
    holder.kill_and_reap();
    CHECK(v.value() == round + 2);
  }
  CHECK(v.get_lock().recoveries() == 50);
}

TEST_CASE("Array: zero-filled, shared with children through a span, locked accessors") {
  mpp::Array<int> a(8);
  CHECK(a.size() == 8);
  for (int x : a) CHECK(x == 0);
  auto codes = run_children(2, [&](int who) {
    auto s = a.span();  // straight into shared memory: the parent sees these writes
    for (std::size_t i = static_cast<std::size_t>(who); i < s.size(); i += 2) s[i] = static_cast<int>(i) * 10;
  });
  CHECK(all_zero(codes));
  for (int i = 0; i < 8; ++i) CHECK(a.get(i) == i * 10);
  CHECK(a.get(-1) == 70);
  a.set(-2, 5);
  CHECK(a[6] == 5);
  CHECK(a[-8] == 0);
  CHECK_THROWS_AS(a.get(8), mpp::IndexError);
  CHECK_THROWS_AS(a.get(-9), mpp::IndexError);
  CHECK_THROWS_AS(a.set(100, 1), mpp::IndexError);
  CHECK_THROWS_AS(a[8], mpp::IndexError);
  std::vector<int> ones(8, 1);
  a.assign(ones);
  CHECK(a.snapshot() == ones);
  std::vector<int> three(3, 3);
  CHECK_THROWS_AS(a.assign(three), mpp::ValueError);
  CHECK(a.snapshot() == ones);  // unchanged
}

TEST_CASE("Array: built from values, fetch_add from N processes is exact") {
  mpp::Array<long> a{1, 2, 3};
  CHECK(a.snapshot() == std::vector<long>{1, 2, 3});
  auto codes = run_children(kProcs, [&](int) {
    for (int i = 0; i < kIters / 4; ++i) a.fetch_add(i % 3, 1);
  });
  CHECK(all_zero(codes));
  auto s = a.snapshot();
  CHECK(std::accumulate(s.begin(), s.end(), 0L) == 6 + long{kProcs} * (kIters / 4));
  mpp::Array<Triple> empty(std::size_t{0});
  CHECK(empty.size() == 0);
  CHECK(empty.snapshot().empty());
  CHECK_THROWS_AS(empty.get(0), mpp::IndexError);
  CHECK_THROWS_AS(mpp::Array<Triple>(SIZE_MAX / 2), mpp::ValueError);
}

TEST_CASE("Array: standalone arrays of many sizes fit their own memory") {
  for (std::size_t n = 0; n < 600; n += 7) {
    mpp::Array<char> a(n);
    CHECK(a.size() == n);
  }
  mpp::Array<double> big(3'000'000);
  big[-1] = 1.5;
  CHECK(big.get(big.size() - 1) == 1.5);
  mpp::Array<std::int64_t> odd(100'001);
  CHECK(odd.size() == 100'001);
}
