#include "mpp/detail/in_place.hpp"

#include <algorithm>

#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

// Against the heap bounds in the segment's header, read once (as the containers' optimistic
// readers check offsets), not the out-of-line in_heap: this runs on every in-place set.
ScratchBlock* scratch_if_plausible(Segment& seg, std::uint64_t off) noexcept {
  const auto* h = seg.at<SegmentHeader>(0);
  const std::uint64_t lo = h->heap_offset, hi = lo + h->heap_size.load(std::memory_order_relaxed);
  if (off < lo || off % 16 != 0 || off > hi || hi - off < sizeof(ScratchBlock)) return nullptr;
  auto* b = seg.at<ScratchBlock>(off);
  return b->capacity <= hi - off - sizeof(ScratchBlock) ? b : nullptr;
}

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

void assign_staged(Intent& in, std::uint32_t op_assign, ScratchBlock& sb, std::uint64_t target,
                   std::byte* dst, std::span<const std::byte> v, StepHook step) noexcept {
  std::memcpy(sb.data(), v.data(), v.size());
  step();
  in.size_before.store(v.size(), std::memory_order_relaxed);
  in.index.store(target, std::memory_order_relaxed);
  step();
  in.arm(op_assign);  // commits
  step();
  // In two halves with a step between, so the store-by-store tests also kill a half copy.
  // From the caller's bytes (equal to the staged ones): reading back the bytes just stored in
  // the scratch block would stall on store forwarding.
  const std::size_t half = v.size() / 2;
  std::memcpy(dst, v.data(), half);
  step();
  std::memcpy(dst + half, v.data() + half, v.size() - half);
  step();
  in.end();
}

void redo_assign(Intent& in, ScratchBlock* sb, std::byte* dst) noexcept {
  const std::uint64_t len = assign_length(in);
  if (sb && dst && len <= sb->capacity) std::memcpy(dst, sb->data(), len);
  in.end();
}

}  // namespace mpp::detail
