// More helpers for multi-process tests, on top of child.hpp: a group of children running
// one body, and a yielding wait on shared state another process changes.
#pragma once

#include <sched.h>

#include <memory>
#include <vector>

#include "support/child.hpp"

namespace mpp::test {

// Spins (yielding the CPU) until cond() holds: for state another process changes, such as a
// primitive's count of sleepers. Not a sleep; the test watchdog bounds it.
template <class F>
void until(F cond) {
  while (!cond()) sched_yield();
}

// Runs body(i) in children i = 0..n-1 at once and returns their exit codes when all ended.
template <class F>
std::vector<int> run_children(int n, F body) {
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < n; ++i) {
    children.push_back(std::make_unique<Child>([&, i](int) { body(i); }));
  }
  std::vector<int> codes;
  for (auto& c : children) codes.push_back(c->exit_code());
  return codes;
}

inline bool all_zero(const std::vector<int>& codes) {
  for (int c : codes) {
    if (c != 0) return false;
  }
  return true;
}

}  // namespace mpp::test
