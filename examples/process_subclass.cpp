// A subclass of Process that overrides run(). Its default name is the class name and a
// counter, "P-1", as in Python.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mpp/process.hpp"

class P : public mpp::Process {
 protected:
  void run() override {
    std::printf("Run child process %s (%d)...\n", name().c_str(), getpid());
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(3));
    std::printf("%s is done\n", name().c_str());
  }
};

int main() {
  std::printf("Parent process %d.\n", getpid());
  P p;
  p.start();
  p.join();
}
