// Python's subprocess.call: runs a command and returns its exit code. The command is a local
// one (`uname -s`, which prints the kernel's name), so the example needs no network.
//
//   import subprocess
//   print('$ uname -s')
//   r = subprocess.call(['uname', '-s'])
//   print('Exit code', r)
#include <cstdio>

#include "mpp/subprocess.hpp"

int main() {
  std::printf("$ uname -s\n");
  std::fflush(stdout);  // the child writes to the same stdout; keep the order
  int r = mpp::subprocess::call({"uname", "-s"});
  std::printf("Exit code %d\n", r);
}
