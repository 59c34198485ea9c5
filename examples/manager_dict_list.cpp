// Python's Manager example: a dict and a list shared by ten processes through a Manager. Each
// child writes a random key and appends its pid; the parent prints both at the end. Unlike
// Python's Manager there is no server process: the dict and the list live in a shared-memory
// segment that the children inherit, and every change is one locked step.
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "mpp/manager.hpp"
#include "mpp/process.hpp"

namespace {

void print_list(const mpp::List<int>& l) {
  std::string s = "[";
  for (int v : l.to_vector()) s += (s.size() > 1 ? ", " : "") + std::to_string(v);
  std::printf("%s]\n", s.c_str());
}

void run(mpp::Dict<int, int> d, mpp::List<int> l) {
  std::mt19937 rng(std::random_device{}());
  d[std::uniform_int_distribution<int>(1, 50)(rng)] = std::uniform_int_distribution<int>(51, 100)(rng);
  l.append(getpid());
  print_list(l);
}

}  // namespace

int main() {
  mpp::Manager manager;  // a segment of its own, removed when main returns
  auto d = manager.dict<int, int>("d");
  auto l = manager.list<int>("l");
  l.extend(std::vector<int>{0, 1, 2, 3, 4});  // Python: manage.list(range(5))
  std::vector<mpp::Process> p_list;
  for (int i = 0; i < 10; ++i) {
    p_list.emplace_back(run, d, l);
    p_list.back().start();
  }
  for (auto& p : p_list) p.join();
  std::string s = "{";
  for (auto& [k, v] : d.items()) s += (s.size() > 1 ? ", " : "") + std::to_string(k) + ": " + std::to_string(v);
  std::printf("%s}\n", s.c_str());
  print_list(l);
  std::printf("%zu pids appended\n", l.size() - 5);
}
