// The Dict's writer stripes: a whole-dict change killed at any store and recovered first
// through one key's stripe (not through check(), which takes every lock in order), insertion
// order kept across concurrent writers of different stripes, and rehashes that run while
// other processes write.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "mpp/dict.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"

namespace {

using Items = std::vector<std::pair<std::string, std::string>>;
using D = mpp::Dict<std::string, std::string>;

long g_steps = 0;
long g_kill_at = 0;
void step_hook() {
  if (++g_steps == g_kill_at) raise(SIGKILL);
}

// The position of each key of `keys` in `order`, or -1.
std::vector<long> positions(const std::vector<std::string>& order, const std::vector<std::string>& keys) {
  std::vector<long> out;
  for (const auto& k : keys) {
    auto it = std::find(order.begin(), order.end(), k);
    out.push_back(it == order.end() ? -1 : static_cast<long>(it - order.begin()));
  }
  return out;
}

}  // namespace

TEST_CASE("a whole-dict change killed at any store, recovered first through one key's stripe") {
  mpp::Manager m(std::size_t{8} << 20);
  auto d = m.dict<std::string, std::string>("d");
  Items before;
  for (int i = 0; i < 40; ++i) before.emplace_back("k" + std::to_string(i), std::string(i % 7 + 1, 'a'));
  struct Case {
    const char* name;
    std::function<void(D&)> op;
  };
  // Enough new keys that the update also doubles the bucket index (a rehash).
  Items many;
  for (int i = 0; i < 30; ++i) many.emplace_back("n" + std::to_string(i), "v");
  many.emplace_back("k3", "replaced");
  many.emplace_back("n0", "again");  // a later duplicate replaces the earlier pair, as in Python
  const std::vector<Case> cases = {
      {"update (with a rehash)", [&](D& x) { x.update(many); }},
      {"clear", [](D& x) { x.clear(); }},
  };
  // The first call after the kill, changing nothing: a read, and a write that locks one
  // stripe. Each reaches one stripe first; the others stay held by the dead writer until
  // check() takes them.
  const std::vector<std::function<void(D&)>> first_uses = {
      [](D& x) { (void)x.get("k17"); },
      [](D& x) { CHECK_FALSE(x.erase("absent")); },
  };
  for (const auto& c : cases) {
    auto reset = [&] {
      d.clear();
      for (auto& [k, v] : before) d.set(k, v);
    };
    reset();
    c.op(d);
    const Items after = d.items();
    for (std::size_t u = 0; u < first_uses.size(); ++u) {
      int killed = 0, saw_after = 0;
      for (long k = 1;; ++k) {
        reset();
        mpp::test::Child child([&](int) {
          g_steps = 0;
          g_kill_at = k;
          mpp::detail::dict_step_hook.store(step_hook);
          c.op(d);
        });
        const int code = child.exit_code();
        INFO(c.name << ", first use " << u << ", killed at store point " << k);
        first_uses[u](d);
        const Items seen = d.items();  // under the shared lock: every stripe recovered
        REQUIRE((seen == before || seen == after));
        REQUIRE(d.check().empty());
        if (code == 0) break;
        REQUIRE(code == -SIGKILL);
        ++killed;
        if (seen == after) ++saw_after;
        REQUIRE(k < 2000);
      }
      CHECK(killed > 0);
      CHECK(saw_after > 0);
    }
  }
  CHECK(mpp::detail::Access::segment(m)->check_heap());
}

TEST_CASE("writers of different stripes keep each writer's insertion order and every count") {
  mpp::Manager m(std::size_t{16} << 20);
  auto d = m.dict<std::string, long>("order");
  constexpr int kWriters = 3, kKeys = 600, kRounds = 4;
  std::vector<std::unique_ptr<mpp::test::Child>> kids;
  for (int w = 0; w < kWriters; ++w) {
    kids.push_back(std::make_unique<mpp::test::Child>([&, w](int) {
      // Inserts its own keys in order (growing the index as it goes), then counts into
      // keys every writer shares.
      for (int i = 0; i < kKeys; ++i) d.set("w" + std::to_string(w) + "-" + std::to_string(i), i);
      for (int r = 0; r < kRounds; ++r) {
        for (int i = 0; i < 100; ++i) d.modify("shared" + std::to_string(i), [](long& v) { ++v; });
      }
    }));
  }
  for (auto& k : kids) REQUIRE(k->exit_code() == 0);
  REQUIRE(d.check().empty());
  REQUIRE(d.size() == static_cast<std::size_t>(kWriters * kKeys + 100));
  const std::vector<std::string> order = d.keys();
  for (int w = 0; w < kWriters; ++w) {
    std::vector<std::string> mine;
    for (int i = 0; i < kKeys; ++i) mine.push_back("w" + std::to_string(w) + "-" + std::to_string(i));
    const auto pos = positions(order, mine);
    REQUIRE(std::find(pos.begin(), pos.end(), -1) == pos.end());
    CHECK(std::is_sorted(pos.begin(), pos.end()));
  }
  for (int i = 0; i < 100; ++i) REQUIRE(d.at("shared" + std::to_string(i)) == kWriters * kRounds);
  // Erase and reinsert: the key moves to the end, as in Python.
  d.erase("w0-0");
  d.set("w0-0", 7);
  CHECK(d.keys().back() == "w0-0");
}
