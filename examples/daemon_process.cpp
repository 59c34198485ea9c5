// A daemon Process (Python: p.daemon = True): when main() returns, the daemon child is
// terminated at once, and the non-daemon child is waited for before the program ends.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "mpp/process.hpp"

void task(const std::string& x) {
  std::printf("%s is running\n", x.c_str());
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::printf("%s is done\n", x.c_str());
}

int main() {
  mpp::Process p1(task, std::string("Daemon"));
  mpp::Process p2(task, std::string("Child process"));
  p2.start();
  p1.daemon(true);  // set p1 as daemon
  p1.start();
  std::printf("The main process code has been executed\n");
}
