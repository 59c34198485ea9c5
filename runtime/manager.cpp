#include "mpp/manager.hpp"

#include <unistd.h>

#include <atomic>
#include <random>

namespace mpp {

Manager::Manager(const std::string& name, std::size_t bytes, Options options)
    : seg_(detail::Segment::create(name, bytes,
                                   {.mode = options.mode,
                                    .persist = options.persist,
                                    .directory_entries = options.directory_entries})) {}

Manager::Manager(std::size_t bytes) {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  char suffix[17];
  std::snprintf(suffix, sizeof suffix, "%08x", rd());
  // pid + counter make it unique among live processes; the random part keeps a stale
  // segment of a dead process with a recycled pid from colliding.
  std::string name = "mpp-" + std::to_string(getpid()) + "-" + std::to_string(++counter) + "-" + suffix;
  seg_ = detail::Segment::create(name, bytes);
}

Manager Manager::attach(const std::string& name) {
  return Manager(detail::Segment::attach(name));
}

}  // namespace mpp
