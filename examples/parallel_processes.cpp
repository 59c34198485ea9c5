// Processes run in parallel: three processes that sleep 1, 2 and 3 s run side by side, so the
// whole takes about 3 s, not 6.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "mpp/process.hpp"

void task(const std::string& name, int n) {
  std::printf("%s is running\n", name.c_str());
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(n));
  std::printf("%s is done\n", name.c_str());
}

int main() {
  mpp::Process p1(task, std::string("Process 1"), 1);
  mpp::Process p2(task, std::string("Process 2"), 2);
  mpp::Process p3(task, std::string("Process 3"), 3);

  auto start_time = std::chrono::steady_clock::now();
  p1.start();
  p2.start();
  p3.start();
  p1.join();
  p2.join();
  p3.join();
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start_time;
  std::printf("elapsed: %.3f s\n", elapsed.count());
}
