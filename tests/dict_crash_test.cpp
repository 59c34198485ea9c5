// The Dict's crash contracts proven store by store (a writer killed between any two stores
// of each mutation), reads under a concurrent writer, reader slots whose owner's pid now
// names another process, and corrupt dicts (SegmentError or a check() finding, never a
// signal or a hang).
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "mpp/detail/process_identity.hpp"
#include "mpp/dict.hpp"
#include "mpp/errors.hpp"
#include "mpp/manager.hpp"
#include "support/child.hpp"

namespace {

using Items = std::vector<std::pair<std::string, std::string>>;
using D = mpp::Dict<std::string, std::string>;

void reset(D& d, const Items& items) {
  d.clear();
  for (auto& [k, v] : items) d.set(k, v);
}

// The child kills itself at its `g_kill_at`-th store point (the hook runs between two
// stores of a mutation, and after the last).
long g_steps = 0;
long g_kill_at = 0;
void step_hook() {
  if (++g_steps == g_kill_at) raise(SIGKILL);
}

template <class K, class V>
mpp::detail::DictState* state_of(mpp::Manager& m, const std::string& name) {
  mpp::detail::Segment::ObjectSpec spec{name, mpp::detail::ObjectKind::dict,
                                        mpp::detail::type_fingerprint<K>(),
                                        mpp::detail::type_fingerprint<V>(),
                                        sizeof(mpp::detail::DictState),
                                        alignof(mpp::detail::DictState)};
  return static_cast<mpp::detail::DictState*>(mpp::detail::Access::segment(m)->find(spec));
}

// The node of int key `key` in the Dict<int, std::string> `name`, found by walking its list
// (for the tests that damage one node).
mpp::detail::DictNode* node_of(mpp::Manager& m, const std::string& name, int key) {
  auto* st = state_of<int, std::string>(m, name);
  auto& seg = *mpp::detail::Access::segment(m);
  for (std::uint64_t off = st->head.load(); off != 0; off = seg.at<mpp::detail::DictNode>(off)->next.load()) {
    auto* n = seg.at<mpp::detail::DictNode>(off);
    int k;
    std::memcpy(&k, n->key_data(), sizeof k);
    if (k == key) return n;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("a writer killed between any two stores of each Dict mutation: all or nothing") {
  mpp::Manager m(std::size_t{8} << 20);
  auto d = m.dict<std::string, std::string>("d");
  Items before;
  for (int i = 0; i < 12; ++i) before.emplace_back("k" + std::to_string(i), std::string(i + 1, 'a' + i));
  before.emplace_back("eight", "12345678");
  before.emplace_back("mid", std::string(40, 'm'));    // copied in place as 16-64 byte moves
  before.emplace_back("long", std::string(100, 'l'));  // as 32-128 byte moves
  before.emplace_back("huge", std::string(300, 'h'));  // past the spare room's limit: staged
  struct Case {
    const char* name;
    std::function<void(D&)> op;
  };
  const std::vector<Case> cases = {
      {"set of a new key", [](D& x) { x.set("new", "fresh value"); }},
      {"set over a key (new node)", [](D& x) { x.set("k3", "a longer value than before"); }},
      {"set over a key (one store)", [](D& x) { x.set("eight", "abcdefgh"); }},
      {"set over a key (same length, copied in place)", [](D& x) { x.set("k11", std::string(12, 'Z')); }},
      {"set over a key (40 bytes, copied in place)", [](D& x) { x.set("mid", std::string(40, 'M')); }},
      {"set over a key (100 bytes, copied in place)", [](D& x) { x.set("long", std::string(100, 'L')); }},
      {"set over a key (300 bytes, staged, then copied in place)", [](D& x) { x.set("huge", std::string(300, 'H')); }},
      {"modify of a key (same length, copied in place)", [](D& x) { x.modify("k4", [](std::string& v) { v[0] = 'Q'; }); }},
      {"erase", [](D& x) { x.erase("k5"); }},
      {"pop", [](D& x) { (void)x.pop("k0"); }},
      {"setdefault", [](D& x) { (void)x.setdefault("sd", "default"); }},
      {"modify", [](D& x) { x.modify("k7", [](std::string& v) { v += "!"; }); }},
      {"update", [](D& x) { x.update({{"k1", "u1"}, {"x", "u2"}, {"y", "u3"}, {"k1", "u4"}, {"k9", "u5"}}); }},
      {"clear", [](D& x) { x.clear(); }},
  };
  for (const auto& c : cases) {
    reset(d, before);
    c.op(d);
    const Items after = d.items();
    REQUIRE(after != before);
    int killed = 0, saw_before = 0, saw_after = 0;
    for (long k = 1;; ++k) {
      reset(d, before);
      mpp::test::Child child([&](int) {
        g_steps = 0;
        g_kill_at = k;
        mpp::detail::dict_step_hook.store(step_hook);
        c.op(d);
      });
      const int code = child.exit_code();
      INFO(c.name << ", killed at store point " << k);
      const std::string problem = d.check();  // recovers the lock the child died holding
      REQUIRE(problem.empty());
      const Items got = d.items();
      REQUIRE((got == before || got == after));
      if (code == 0) {
        REQUIRE(got == after);
        break;
      }
      REQUIRE(code == -SIGKILL);
      ++killed;
      (got == before ? saw_before : saw_after)++;
      REQUIRE(k < 1000);
    }
    INFO(c.name << ": " << killed << " kills, " << saw_before << " undone, " << saw_after << " done");
    CHECK(killed > 0);
    CHECK(saw_after > 0);  // a kill after the commit store: finished or kept, never half
  }
  CHECK(mpp::detail::Access::segment(m)->check_heap());
}

TEST_CASE("Dict::update killed at random, 400 times: every pair or none") {
  mpp::Manager m(std::size_t{4} << 20);
  auto d = m.dict<int, std::string>("u");
  d.update({{0, "0"}, {1, "0"}, {2, "0"}, {3, "0"}});
  std::mt19937 rng(11);
  for (int round = 0; round < 400; ++round) {
    const unsigned seed = rng();
    mpp::test::Child child([&](int ready_fd) {
      std::mt19937 r(seed);
      for (long i = 1;; ++i) {
        const std::string v = std::to_string(r()) + std::string(r() % 64, 'v');
        d.update({{0, v}, {1, v}, {2, v}, {3, v}});
        if (i == 3) mpp::test::signal_ready(ready_fd);
      }
    });
    REQUIRE(child.wait_ready());
    volatile unsigned spin = 0;
    for (unsigned n = rng() % 20000; n > 0; --n) spin = spin + 1;
    child.kill_and_reap();
    INFO("round " << round);
    REQUIRE(d.check().empty());
    const auto items = d.items();
    REQUIRE(items.size() == 4);
    for (auto& [k, v] : items) REQUIRE(v == items[0].second);
  }
  CHECK(mpp::detail::Access::segment(m)->check_heap());
}

TEST_CASE("lock-free Dict reads under a writer see whole values only") {
  mpp::Manager m(std::size_t{4} << 20);
  auto d = m.dict<int, std::string>("r");
  auto value = [](unsigned x) { return std::string(8 + x % 90, static_cast<char>('a' + x % 26)); };
  auto whole = [](const std::string& v) {  // one value(x), not parts of two
    if (v.size() < 8 || v.size() > 97) return false;
    for (char c : v)
      if (c != v[0]) return false;
    return true;
  };
  for (int k = 0; k < 64; ++k) d.set(k, value(static_cast<unsigned>(k)));
  mpp::test::Child writer([&](int ready_fd) {
    mpp::test::signal_ready(ready_fd);
    for (unsigned i = 0;; ++i) {
      d.set(static_cast<int>(i % 64), value(i));  // replaces a node: frees and reuses memory
      if (i % 7 == 0) d.erase(100 + static_cast<int>(i % 50));
      else d.set(100 + static_cast<int>(i % 50), value(i * 3));
    }
  });
  REQUIRE(writer.wait_ready());
  long bad = 0;
  for (int i = 0; i < 100000; ++i) {
    auto v = d.get(i % 64);
    if (!v || !whole(*v)) ++bad;
    if (!d.contains(i % 64)) ++bad;
  }
  writer.kill_and_reap();
  CHECK(bad == 0);
  CHECK(d.check().empty());
}

TEST_CASE("a reader slot whose pid now names another process does not block writers") {
  mpp::Manager m(std::size_t{1} << 20);
  auto d = m.dict<int, int>("p");
  d.set(1, 1);
  auto* st = state_of<int, int>(m, "p");
  REQUIRE(st != nullptr);
  // This very process's pid with another start time: a reader that died and whose pid
  // was handed to a live process. One slot with its bit set (reading), one without (killed
  // between claiming the slot and setting its bit).
  const auto ghost = mpp::detail::identity_word(getpid(), mpp::detail::self_start_ticks() + 12345);
  st->readers.slot[3].store(ghost);
  st->readers.busy.fetch_or(1u << 3);
  st->readers.slot[7].store(ghost);
  d.set(1, 2);  // the watchdog fails this test if the writer waits for the ghost
  CHECK(d.at(1) == 2);
  CHECK((st->readers.busy.load() & (1u << 3)) == 0);
  CHECK(st->readers.slot[3].load() == 0);
  CHECK(st->readers.slot[7].load() == 0);
  // Every slot taken by ghosts: a reader still reads (holding the mutex, or a reaped slot).
  for (auto& s : st->readers.slot) s.store(ghost);
  {
    auto r = d.read();
    CHECK(r.view(1) == 2);
  }
  d.set(1, 3);
  CHECK(d.at(1) == 3);
}

TEST_CASE("a value of the old one's length is replaced where it lies: its spare room up to 128 bytes, staged past that") {
  mpp::Manager m(std::size_t{2} << 20);
  auto d = m.dict<std::string, std::string>("rooms");
  using Node = mpp::detail::DictNode;
  auto& seg = *mpp::detail::Access::segment(m);
  auto* st = state_of<std::string, std::string>(m, "rooms");
  auto node_of = [&](const std::string& key) -> Node* {
    for (std::uint64_t off = st->head.load(); off != 0; off = seg.at<Node>(off)->next.load()) {
      Node* n = seg.at<Node>(off);
      // A std::string key is stored as its characters.
      if (std::string(reinterpret_cast<const char*>(n->key_data()), n->key_len) == key) return n;
    }
    return nullptr;
  };
  struct Row {
    std::size_t length;
    std::uint32_t rooms;  // what a fresh node of that value length has
  };
  for (const Row row : {Row{3, Node::kSpare}, Row{8, 0}, Row{12, Node::kSpare}, Row{100, Node::kSpare},
                        Row{128, Node::kSpare}, Row{129, 0}, Row{300, 0}}) {
    INFO("a value of " << row.length << " bytes");
    const std::string key = "v" + std::to_string(row.length);
    d.set(key, std::string(row.length, 'a'));
    Node* n = node_of(key);
    REQUIRE(n != nullptr);
    CHECK(n->rooms == row.rooms);
    for (char c : {'b', 'c', 'd'}) {
      d.set(key, std::string(row.length, c));
      CHECK(node_of(key) == n);  // in place: the same node
      CHECK(d.at(key) == std::string(row.length, c));
      if (row.rooms != 0) CHECK((n->rooms & Node::kSecond) == (c == 'c' ? 0u : Node::kSecond));
    }
  }
  CHECK(d.check().empty());
  // A damaged rooms word makes the node implausible: check() says so, reads and writes work
  // or throw SegmentError, never a signal.
  Node* n = node_of("v100");
  const std::uint32_t saved = n->rooms;
  n->rooms = 7;
  CHECK_FALSE(d.check().empty());
  try {
    (void)d.get("v100");
    d.set("v12", std::string(12, 'z'));
  } catch (const mpp::SegmentError&) {
  }
  n->rooms = saved;
  CHECK(d.check().empty());
  CHECK(d.at("v100") == std::string(100, 'd'));
}

TEST_CASE("a found key whose value length or rooms word is damaged: SegmentError from every locked read, never a signal") {
  using Node = mpp::detail::DictNode;
  struct Method {
    const char* name;
    std::function<void(mpp::Dict<int, std::string>&)> call;
  };
  const std::vector<Method> methods = {
      {"pop", [](auto& d) { (void)d.pop(50); }},
      {"pop with a default", [](auto& d) { (void)d.pop(50, "x"); }},
      {"setdefault", [](auto& d) { (void)d.setdefault(50, "x"); }},
      {"modify", [](auto& d) { d.modify(50, [](std::string& v) { v += "!"; }); }},
      {"a view under read()", [](auto& d) { (void)d.read().view(50); }},
  };
  struct Damage {
    const char* name;
    std::size_t value_bytes;  // 200: a node without a spare room
    void (*apply)(Node&);
  };
  const std::vector<Damage> damages = {
      {"a value length far past the heap", 20, [](Node& n) { n.value_len = 0x7fffffff; }},
      {"a rooms word mpp never writes", 20, [](Node& n) { n.rooms = 5; }},
      {"a spare room claimed by a node without one", 200, [](Node& n) { n.rooms = Node::kSpare | Node::kSecond; }},
  };
  for (const auto& dmg : damages) {
    for (const auto& m : methods) {
      INFO(dmg.name << ", then " << m.name);
      mpp::Manager mgr(std::size_t{1} << 20);
      auto d = mgr.dict<int, std::string>("v");
      for (int i = 0; i < 100; ++i) d.set(i, std::string(dmg.value_bytes, 'a'));
      Node* n50 = node_of(mgr, "v", 50);
      REQUIRE(n50 != nullptr);
      if (dmg.value_bytes == 200) REQUIRE(n50->rooms == 0);
      dmg.apply(*n50);
      CHECK_THROWS_AS(m.call(d), mpp::SegmentError);
      CHECK_FALSE(d.check().empty());
    }
  }
}

TEST_CASE("a set over a key whose rooms word is damaged writes nothing past its node: the node is replaced") {
  using Node = mpp::detail::DictNode;
  for (const std::uint32_t bad : {Node::kSecond, Node::kSpare | Node::kSecond, std::uint32_t{6}}) {
    for (const std::size_t length : {std::size_t{20}, std::size_t{200}}) {
      INFO("rooms word " << bad << " on a node of a " << length << "-byte value");
      mpp::Manager mgr(std::size_t{1} << 20);
      auto d = mgr.dict<int, std::string>("r");
      for (int i = 0; i < 100; ++i) d.set(i, std::string(length, char('a' + i % 26)));
      if (Node::rooms_valid(bad, length)) continue;  // a legitimate word for this length
      Node* n50 = node_of(mgr, "r", 50);
      REQUIRE(n50 != nullptr);
      n50->rooms = bad;
      d.set(50, std::string(length, 'Z'));
      CHECK(d.check().empty());
      CHECK(d.at(50) == std::string(length, 'Z'));
      for (int i = 0; i < 100; ++i) {
        if (i != 50) CHECK(d.at(i) == std::string(length, char('a' + i % 26)));
      }
    }
  }
}

TEST_CASE("a corrupt Dict gives SegmentError or a check() finding, never a signal or a hang") {
  mpp::Manager m(std::size_t{2} << 20);
  auto d = m.dict<int, int>("c");
  for (int i = 0; i < 100; ++i) d.set(i, i);
  auto* st = state_of<int, int>(m, "c");
  auto& seg = *mpp::detail::Access::segment(m);
  std::vector<std::uint64_t> nodes;
  for (std::uint64_t off = st->head.load(); off != 0; off = seg.at<mpp::detail::DictNode>(off)->next.load())
    nodes.push_back(off);
  REQUIRE(nodes.size() == 100);
  auto* n50 = seg.at<mpp::detail::DictNode>(nodes[50]);
  // Every read and write method, each either working or throwing SegmentError.
  auto use_all = [&] {
    int errors = 0;
    auto attempt = [&](auto&& f) {
      try {
        f();
      } catch (const mpp::SegmentError&) {
        ++errors;
      }
    };
    for (int k : {0, 50, 99, 1000}) {
      attempt([&] { (void)d.get(k); });
      attempt([&] { (void)d.contains(k); });
    }
    attempt([&] { (void)d.keys(); });
    attempt([&] { (void)d.items(); });
    attempt([&] { d.for_each([](int, int) {}); });
    return errors;
  };
  struct Damage {
    const char* name;
    std::uint64_t* field;
    std::uint64_t bad;
  };
  const std::uint64_t heap_end = seg.header().heap_offset + seg.header().heap_size;
  const std::vector<Damage> damages = {
      {"a bucket link to an odd offset", &n50->bnext, nodes[50] + 8},
      {"a bucket link past the heap", &n50->bnext, heap_end + 4096},
      {"a bucket chain cycle", &n50->bnext, nodes[50]},
      {"a list link past the heap", reinterpret_cast<std::uint64_t*>(&n50->next), heap_end - 16},
      {"a list cycle", reinterpret_cast<std::uint64_t*>(&n50->next), nodes[10]},
      {"the bucket index offset", reinterpret_cast<std::uint64_t*>(&st->buckets), 24},
      {"a node's lengths", reinterpret_cast<std::uint64_t*>(&n50->key_len), ~std::uint64_t{0}},
  };
  for (const auto& dmg : damages) {
    INFO(dmg.name);
    const std::uint64_t saved = *dmg.field;
    *dmg.field = dmg.bad;
    (void)use_all();
    CHECK_FALSE(d.check().empty());
    *dmg.field = saved;
    CHECK(d.check().empty());
  }
  // A cycle in the list is named as such, and the error names the dict.
  auto* next50 = reinterpret_cast<std::uint64_t*>(&n50->next);
  const std::uint64_t saved = *next50;
  *next50 = nodes[10];
  CHECK_THROWS_WITH(d.keys(), Catch::Contains("dict 'c'") && Catch::Contains("cycle"));
  CHECK_THAT(d.check(), Catch::Contains("cycle"));
  *next50 = saved;
  CHECK(d.check().empty());
  CHECK(d.size() == 100);
}
