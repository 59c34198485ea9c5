// Attaches to a segment by name from a process that shares nothing else with its creator,
// and reports what it finds. Exec'd by segment_test and manager_test.
//   mpp_attach_helper segment NAME      attach, check the heap, allocate and free
//   mpp_attach_helper manager NAME      read dict "d"["from-parent"], set "from-helper" = 2,
//                                       append "helper" to list "l"
// Prints one line starting with "ok" or "error: <exception type>: <message>".
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "mpp/detail/segment.hpp"
#include "mpp/manager.hpp"
#include "mpp/errors.hpp"

namespace {

int run_segment(const std::string& name) {
  auto seg = mpp::detail::Segment::attach(name);
  if (!seg->check_heap()) {
    std::printf("error: heap check failed\n");
    return 1;
  }
  void* p = seg->allocate(1000);
  std::memset(p, 0x5a, 1000);
  seg->deallocate(p);
  std::printf("ok creator=%d size=%zu\n", static_cast<int>(seg->header().creator_pid), seg->size());
  return 0;
}

int run_manager(const std::string& name) {
  auto m = mpp::Manager::attach(name);
  auto d = m.dict<std::string, int>("d");
  int from_parent = d.at("from-parent");
  d.set("from-helper", 2);
  m.list<std::string>("l").append("helper");
  std::printf("ok parent=%d\n", from_parent);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s segment NAME\n", argv[0]);
    return 2;
  }
  std::string cmd = argv[1], name = argv[2];
  try {
    if (cmd == "segment") return run_segment(name);
    if (cmd == "manager") return run_manager(name);
  } catch (const mpp::FileNotFoundError& e) {
    std::printf("error: FileNotFoundError: %s\n", e.what());
    return 1;
  } catch (const mpp::SegmentError& e) {
    std::printf("error: SegmentError: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::printf("error: other: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown command %s\n", cmd.c_str());
  return 2;
}
