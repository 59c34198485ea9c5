#include "mpp/detail/shm_bounds.hpp"

#include <cstring>

#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"

namespace mpp::detail {

bool in_heap(Segment& seg, std::uint64_t off, std::uint64_t bytes, std::uint64_t align) noexcept {
  const auto& h = seg.header();
  const std::uint64_t lo = h.heap_offset;
  const std::uint64_t hi = std::min<std::uint64_t>(h.heap_offset + h.heap_size, seg.size());
  if (align == 0 || off % align != 0 || off < lo || off > hi) return false;
  return bytes <= hi - off;
}

std::string object_name(Segment& seg, const void* state) {
  const auto& h = seg.header();
  const std::uint64_t off = seg.offset_of(state);
  for (std::uint32_t i = 0; i < h.directory_capacity; ++i) {
    const std::uint64_t e = h.directory_offset + std::uint64_t{i} * sizeof(DirectoryEntry);
    if (e + sizeof(DirectoryEntry) > seg.size()) break;
    const auto* d = seg.at<DirectoryEntry>(e);
    if (d->state.load(std::memory_order_acquire) == static_cast<std::uint32_t>(EntryState::published) &&
        d->object_offset == off) {
      return std::string(d->name, strnlen(d->name, sizeof d->name));
    }
  }
  return {};
}

void throw_corrupt(Segment& seg, const void* state, std::string_view kind, std::string_view what) {
  std::string name = object_name(seg, state);
  std::string msg = "the " + std::string(kind);
  if (!name.empty()) msg += " '" + name + "'";
  msg += " is corrupt: " + std::string(what) +
         "; its segment was damaged (run mpp-inspect check on it) and this object cannot be used";
  throw SegmentError(msg);
}

}  // namespace mpp::detail
