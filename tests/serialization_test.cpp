// Standard containers just work on every channel, with no Boost include: this file
// includes neither mpp/archive.hpp nor any boost/serialization header.
#include "mpp/serialization.hpp"

#include <catch2/catch.hpp>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "mpp/manager.hpp"
#include "mpp/pipe.hpp"
#include "mpp/pool.hpp"
#include "mpp/process.hpp"
#include "mpp/queue.hpp"

namespace {

struct Reading {  // trivially copyable: sent as its bytes, also inside containers
  int sensor;
  double value;
  bool operator==(const Reading&) const = default;
};

using Nested = std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>>;

Nested sample() {
  return {{"a", {std::pair{1, std::string("one")}, std::nullopt}}, {"", {}}};
}

std::vector<int> tally(const std::vector<std::string>& words, const std::set<char>& letters) {
  std::vector<int> out;
  for (const auto& w : words) {
    int n = 0;
    for (char c : w) n += letters.count(c) ? 1 : 0;
    out.push_back(n);
  }
  return out;
}

}  // namespace

TEST_CASE("the tutorial's first Queue: a std::vector<int> from a child, no Boost include") {
  mpp::Queue<std::vector<int>> q;
  mpp::Process p([](mpp::Queue<std::vector<int>> q) { q.put({1, 2, 3, 4}); }, q);
  p.start();
  CHECK(q.get() == std::vector<int>{1, 2, 3, 4});
  p.join();
  CHECK(p.exitcode() == 0);
}

TEST_CASE("nested standard containers cross a Queue, a Pipe and a Pool") {
  mpp::Queue<Nested> q;
  auto [parent_conn, child_conn] =
      mpp::Pipe<std::tuple<std::deque<Reading>, std::unordered_map<int, std::string>, std::variant<int, std::string>>>();
  mpp::Process p(
      [](mpp::Queue<Nested> q, auto& conn) {
        q.put(sample());
        conn.send({{{1, 0.5}, {2, -1.0}}, {{7, "seven"}}, std::string("v")});
      },
      q, std::move(child_conn));
  p.start();
  CHECK(q.get() == sample());
  auto [readings, names, choice] = parent_conn.recv();
  CHECK(readings == std::deque<Reading>{{1, 0.5}, {2, -1.0}});
  CHECK(names == std::unordered_map<int, std::string>{{7, "seven"}});
  CHECK(choice == std::variant<int, std::string>(std::string("v")));
  p.join();

  mpp::Pool pool(2);
  std::vector<std::string> words{"apple", "kiwi", ""};
  CHECK(pool.apply(tally, words, std::set<char>{'a', 'i'}) == std::vector<int>{1, 2, 0});
  auto lengths = pool.map([](const std::vector<std::string>& ws) { return std::map<std::string, std::size_t>{{ws.at(0), ws.size()}}; },
                          std::vector<std::vector<std::string>>{{"x"}, {"y", "z"}});
  CHECK(lengths == std::vector<std::map<std::string, std::size_t>>{{{"x", 1}}, {{"y", 2}}});
  pool.close();
  pool.join();
}

TEST_CASE("standard containers as Dict keys and values and List elements of a Manager") {
  mpp::Manager m(4 << 20);
  auto d = m.dict<std::pair<std::string, int>, std::vector<std::string>>("d");
  auto l = m.list<std::map<std::string, double>>("l");
  mpp::Process p(
      [](decltype(d) d, decltype(l) l) {
        d.set({"k", 1}, {"x", "y"});
        l.append({{"pi", 3.14}});
      },
      d, l);
  p.start();
  p.join();
  CHECK(d.get({"k", 1}) == std::vector<std::string>{"x", "y"});
  CHECK(l.get(0) == std::map<std::string, double>{{"pi", 3.14}});
}
