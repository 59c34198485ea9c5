// Processes do not share memory (Python's data isolation): the child changes its copy of a
// global; the parent's stays 100.
#include <chrono>
#include <cstdio>
#include <thread>

#include "mpp/process.hpp"

int x = 100;

void task() {
  std::printf("The child process opens with the current x value of %d\n", x);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  x = 10;
  std::printf("The child process ends and the current x value is %d\n", x);
}

int main() {
  std::printf("Currently the parent process, ready to open the child process, x value of %d\n", x);
  mpp::Process p1(task);
  p1.start();
  p1.join();
  std::printf("The current parent process is ready to terminate the parent process. The value of x is %d.\n", x);
}
