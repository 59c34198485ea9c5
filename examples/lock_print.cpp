// Python's docs, "Synchronization between processes": ten processes print, each holding one
// shared Lock while it writes its line in three pieces, so no line is ever torn by another
// process's output.
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "mpp/process.hpp"
#include "mpp/sync.hpp"

void f(mpp::Lock lock, int i) {
  auto held = lock.guard();  // Python: with lock:
  // Three separate writes: without the lock, other processes' pieces could fall between.
  std::printf("hello ");
  std::fflush(stdout);
  std::printf("world ");
  std::fflush(stdout);
  std::printf("%d\n", i);
  std::fflush(stdout);
}

int main() {
  mpp::Lock lock;  // made before the children, which share it
  std::vector<mpp::Process> children;
  for (int num = 0; num < 10; ++num) {
    children.emplace_back(f, lock, num);
    children.back().start();
  }
  for (auto& p : children) p.join();
}
