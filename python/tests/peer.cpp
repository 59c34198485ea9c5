// The C++ side of the Python module's interoperability tests and benchmark: a program that
// attaches to a Manager segment made by Python and uses its objects with the C++ types the
// Python ones map to.
//
//   mpp-python-peer produce SEGMENT QUEUE COUNT BYTES STOPS   put COUNT messages of BYTES
//       bytes (the first 8 the message's index, decimal, zero-padded), then STOPS empty ones
//   mpp-python-peer read-dict SEGMENT DICT        print the dict<std::string, std::int64_t>,
//       one "key value" line per pair in insertion order
//   mpp-python-peer write-dict SEGMENT DICT N     set "c<i>" -> i * i for i < N
//   mpp-python-peer open-dict-as SEGMENT DICT double|string   open dict<std::string, V>:
//       exits 3 printing the TypeMismatch message, 0 if it opened
//
// Exit status: 0 done, 2 bad arguments, 3 TypeMismatch, 1 any other error (printed).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "mpp/manager.hpp"

namespace {

int usage() {
  std::fprintf(stderr, "usage: mpp-python-peer produce|read-dict|write-dict|open-dict-as SEGMENT NAME ...\n");
  return 2;
}

int produce(mpp::Manager& m, const std::string& name, long count, std::size_t bytes, long stops) {
  auto q = m.queue<std::string>(name);
  std::string msg(std::max<std::size_t>(bytes, 8), 'x');
  char index[24];
  for (long i = 0; i < count; ++i) {
    std::snprintf(index, sizeof index, "%08ld", i);
    std::memcpy(msg.data(), index, 8);
    q.put(msg);
  }
  for (long i = 0; i < stops; ++i) q.put(std::string());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string cmd = argv[1];
  try {
    auto m = mpp::Manager::attach(argv[2]);
    const std::string name = argv[3];
    if (cmd == "produce" && argc == 7) {
      return produce(m, name, std::stol(argv[4]), std::stoul(argv[5]), std::stol(argv[6]));
    }
    if (cmd == "read-dict") {
      for (auto& [k, v] : m.dict<std::string, std::int64_t>(name).items()) {
        std::printf("%s %lld\n", k.c_str(), static_cast<long long>(v));
      }
      return 0;
    }
    if (cmd == "write-dict" && argc == 5) {
      auto d = m.dict<std::string, std::int64_t>(name);
      for (std::int64_t i = 0; i < std::stoll(argv[4]); ++i) d.set("c" + std::to_string(i), i * i);
      return 0;
    }
    if (cmd == "open-dict-as" && argc == 5) {
      const std::string v = argv[4];
      if (v == "double") {
        (void)m.dict<std::string, double>(name);
      } else if (v == "string") {
        (void)m.dict<std::string, std::string>(name);
      } else {
        return usage();
      }
      return 0;
    }
    return usage();
  } catch (const mpp::TypeMismatch& e) {
    std::printf("TypeMismatch: %s\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mpp-python-peer: %s\n", e.what());
    return 1;
  }
}
