// expect: mpp cannot send this type: make it trivially copyable, or give it a serialize()
// names: Session
// A struct with a std::string member is neither trivially copyable nor serializable: a
// Queue of maps of it is refused with one error, and the notes name the struct.
#include <map>
#include <string>

#include "mpp/queue.hpp"

struct Session {
  std::string user;
  int hits;
};

int main() {
  mpp::Queue<std::map<int, Session>> q;
  q.put({{1, Session{"ada", 2}}});
  return q.get().size() == 1 ? 0 : 1;
}
