// Python's pool.apply() runs one task at a time, waiting for each (each task sleeps 0.2 s,
// which keeps the run short and makes the order plain).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mpp/pool.hpp"

void foo(int) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::printf("in process %d\n", getpid());  // the worker's pid
}

int main() {
  mpp::Pool pool(5);  // five worker processes
  for (int i = 0; i < 10; ++i) pool.apply(foo, i);  // waits for each task
  std::printf("end\n");
  pool.close();  // no more tasks
  pool.join();   // wait for the workers to finish
}
