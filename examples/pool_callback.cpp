// Python's apply_async(callback=...): a callback runs in the main process (its pid, not the
// worker's) when a task is done, with the task's result (None: foo returns nothing).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mpp/pool.hpp"

void foo(int) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::printf("in process %d\n", getpid());  // the worker's pid
}

void bar() {  // foo returns nothing, so the callback gets nothing: Python's None
  std::printf("-->exec done: None %d\n", getpid());  // the main process's pid
  std::fflush(stdout);
}

int main() {
  mpp::Pool pool(2);
  std::printf("Main process %d\n", getpid());
  for (int i = 0; i < 3; ++i) pool.apply_async(foo, i, mpp::callback(bar));
  std::printf("end\n");
  std::fflush(stdout);
  pool.close();
  pool.join();
}
