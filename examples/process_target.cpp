// Python's Process(target=..., args=...): a Process with a target function and arguments.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "mpp/process.hpp"

// Code to be executed by a child process
void run_proc(const std::string& name) {
  std::printf("Run child process %s (%d)...\n", name.c_str(), getpid());
}

int main() {
  std::printf("Parent process %d.\n", getpid());
  mpp::Process p(run_proc, std::string("test"));
  std::printf("Child process will start.\n");
  p.start();
  p.join();  // waits until the child ends: the usual way to synchronise with it
  std::printf("Child process end.\n");
}
