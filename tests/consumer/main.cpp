// Built against the installed mpp by tools/test: proves the headers, the library and its
// CMake/pkg-config metadata are complete.
#include <mpp/mpp.hpp>

#include <iostream>

int main() {
  try {
    throw mpp::Empty("nothing");
  } catch (const mpp::Error& e) {
    std::cout << "consumer: linked mpp, caught " << e.what() << "\n";
  }
  return 0;
}
