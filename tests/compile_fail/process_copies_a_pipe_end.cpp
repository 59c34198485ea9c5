// expect: hand it over with std::move(arg)
// Python's Process(target=f, args=(child_conn,)) written as is: a Connection cannot be
// copied into the Process, and the one error says what to write instead.
#include "mpp/pipe.hpp"
#include "mpp/process.hpp"

void child(mpp::Connection<int>& conn) { conn.send(1); }

int main() {
  auto [parent_conn, child_conn] = mpp::Pipe<int>();
  mpp::Process p(child, child_conn);
  p.start();
  return parent_conn.recv();
}
