// Python's pool.apply_async() queues the tasks and returns at once; the five workers run them
// side by side ("end" comes first).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mpp/pool.hpp"

void foo(int) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::printf("in process %d\n", getpid());
}

int main() {
  mpp::Pool pool(5);
  for (int i = 0; i < 10; ++i) pool.apply_async(foo, i);  // returns at once
  std::printf("end\n");
  std::fflush(stdout);
  pool.close();
  pool.join();  // without it, leaving main would terminate the pool and its tasks
}
