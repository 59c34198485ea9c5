// The tutorial's section VIII, "Using Pipe": a child sends two lists through a Pipe, the
// parent receives both. (Python: parent_conn, child_conn = Pipe(); conn.send([1,2,3]) ...)
#include <sys/wait.h>
#include <unistd.h>

#include <boost/serialization/vector.hpp>
#include <cstdio>
#include <vector>

#include "mpp/pipe.hpp"

namespace {

void put_id(mpp::Connection<std::vector<int>>& conn) {
  conn.send({1, 2, 3});
  conn.send({4, 5, 6});
  conn.close();
}

void print(const std::vector<int>& v) {
  std::printf("[");
  for (std::size_t i = 0; i < v.size(); ++i) std::printf(i ? ", %d" : "%d", v[i]);
  std::printf("]\n");
}

}  // namespace

int main() {
  // The two ends, like two telephones joined by a line.
  auto [parent_conn, child_conn] = mpp::Pipe<std::vector<int>>();
  pid_t p = fork();
  if (p == 0) {
    put_id(child_conn);
    _exit(0);
  }
  print(parent_conn.recv());  // [1, 2, 3]
  print(parent_conn.recv());  // [4, 5, 6]
  int status = 0;
  waitpid(p, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
