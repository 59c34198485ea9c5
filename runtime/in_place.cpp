#include "mpp/detail/in_place.hpp"

#include <algorithm>

namespace mpp::detail {

// Blocks of 256-byte multiples: a list of values of a few sizes settles on one block.
ScratchBlock* scratch_for(Segment& seg, Intent& in, std::uint32_t op_scratch,
                          std::atomic<std::uint64_t>& word, std::atomic<std::uint64_t>& held,
                          std::uint64_t bytes, StepHook step) noexcept {
  const std::uint64_t old_off = word.load(std::memory_order_relaxed);
  ScratchBlock* cur = old_off ? scratch_if_plausible(seg, old_off) : nullptr;
  if (cur && cur->capacity >= bytes) return cur;
  const std::uint64_t cap = std::max<std::uint64_t>(256, (bytes + 255) / 256 * 256);
  in.begin(op_scratch);
  ScratchBlock* nb;
  try {
    nb = static_cast<ScratchBlock*>(in.allocate(seg, sizeof(ScratchBlock) + cap, 0));
  } catch (...) {
    in.end();
    return nullptr;
  }
  nb->capacity = cap;
  nb->reserved = 0;
  step();
  if (cur) in.retire(old_off, sizeof(ScratchBlock) + cur->capacity);
  step();
  word.store(seg.offset_of(nb), std::memory_order_release);  // publishes
  step();
  held.fetch_add(sizeof(ScratchBlock) + cap - (cur ? sizeof(ScratchBlock) + cur->capacity : 0),
                 std::memory_order_relaxed);
  if (cur) seg.deallocate(cur);
  step();
  in.end();
  return nb;
}

void redo_assign(Intent& in, ScratchBlock* sb, std::byte* dst) noexcept {
  const std::uint64_t len = assign_length(in);
  if (sb && dst && len <= sb->capacity) std::memcpy(dst, sb->data(), len);
  in.end();
}

}  // namespace mpp::detail
