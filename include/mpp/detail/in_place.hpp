// Replacing a value by one of the same length where it lies, so that a writer killed at any
// store leaves the old value or the new one, never a mix, with no allocation and no free
// (docs/design/list-reads.md, docs/design/dict-concurrency.md). Shared by the Dict and the
// List:
//   - 1, 2, 4 or 8 bytes: one aligned store (store_in_one);
//   - longer: the new bytes are staged in the container's scratch block (one per lock, kept
//     for the next replacement), then the intent record says where they go (its `index`:
//     the target's offset, `size_before`: the length) and its op store commits, then the
//     copy; the recovery of a dead writer copies again from the scratch block.
// Both run under the container's exclusive lock; `step` is the container's crash-test hook,
// called between any two stores.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>

#include "mpp/detail/intent.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

// The staging block of in-place replacements: `capacity` bytes of data after the header.
struct ScratchBlock {
  std::uint64_t capacity = 0;
  std::uint64_t reserved = 0;
  std::byte* data() { return reinterpret_cast<std::byte*>(this + 1); }
};

using StepHook = void (*)() noexcept;

// Whether a value of `n` bytes is replaced by one aligned store (store_in_one).
constexpr bool one_store_size(std::size_t n) noexcept { return n == 1 || n == 2 || n == 4 || n == 8; }

// Stores `v` (1, 2, 4 or 8 bytes) into `dst` (aligned to its size) with one aligned store,
// so that a reader after a crash sees the old value or the new one, never a mix; false
// (nothing stored) for other sizes. Inline: where a trivially copyable value's size is known
// at compile time the switch folds away.
inline bool store_in_one(std::byte* dst, std::span<const std::byte> v) noexcept {
  auto store = [&]<class W>(W) {
    W x;
    std::memcpy(&x, v.data(), sizeof(W));
    std::atomic_ref<W>(*reinterpret_cast<W*>(dst)).store(x, std::memory_order_relaxed);
    return true;
  };
  switch (v.size()) {
    case 1: return store(std::uint8_t{});
    case 2: return store(std::uint16_t{});
    case 4: return store(std::uint32_t{});
    case 8: return store(std::uint64_t{});
    default: return false;
  }
}

// memcpy, with the copies of 16 to 128 bytes (most values replaced in place) done inline as
// two fixed-size moves, one from each end, overlapping in the middle (as memcpy itself does
// for short sizes): for these the call and its size dispatch cost as much as the copy.
[[gnu::always_inline]] inline void copy_bytes(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  auto ends = [&]<std::size_t W>(std::integral_constant<std::size_t, W>) {
    std::memcpy(dst, src, W);
    std::memcpy(dst + n - W, src + n - W, W);
  };
  if (n < 16 || n > 128) {
    std::memcpy(dst, src, n);
  } else if (n <= 32) {
    ends(std::integral_constant<std::size_t, 16>{});
  } else if (n <= 64) {
    ends(std::integral_constant<std::size_t, 32>{});
  } else {
    ends(std::integral_constant<std::size_t, 64>{});
  }
}

// The scratch block at `off` if it can be one (in the heap, aligned, its capacity fitting),
// else nullptr (also for 0, no block yet). Inline, against the heap bounds in the segment's
// header read once (as the containers' optimistic readers check offsets), not the
// out-of-line in_heap: this runs on every in-place set.
inline ScratchBlock* scratch_if_plausible(Segment& seg, std::uint64_t off) noexcept {
  const auto* h = seg.at<SegmentHeader>(0);
  const std::uint64_t lo = h->heap_offset, hi = lo + h->heap_size.load(std::memory_order_relaxed);
  if (off < lo || off % 16 != 0 || off > hi || hi - off < sizeof(ScratchBlock)) return nullptr;
  auto* b = seg.at<ScratchBlock>(off);
  return b->capacity <= hi - off - sizeof(ScratchBlock) ? b : nullptr;
}

// The scratch block `word` names when it holds `bytes`, else a larger one allocated and
// published in `word` (recorded in `in` under `op_scratch`; the old one retired and freed;
// `held` counts the difference). nullptr when the heap has no room: the caller then replaces
// the value the ordinary way. `in.op` must be 0 (no change in flight).
ScratchBlock* scratch_for(Segment& seg, Intent& in, std::uint32_t op_scratch,
                          std::atomic<std::uint64_t>& word, std::atomic<std::uint64_t>& held,
                          std::uint64_t bytes, StepHook step) noexcept;

// Copies `v` over `dst` (`target`: the offset the container's recovery resolves to `dst`)
// through `sb`, committed by `in`'s op store of `op_assign`. `in.op` must be 0: the two
// fields op_assign uses are filled in first and the op store alone commits (the recovery of
// op_assign reads nothing else; every other op clears the whole record when it begins).
// Inline, with the hook as a template argument, so that the container's own hook (an inline
// load and branch) is not an indirect call at each of the six steps of every such set.
template <class Step>
void assign_staged(Intent& in, std::uint32_t op_assign, ScratchBlock& sb, std::uint64_t target,
                   std::byte* dst, std::span<const std::byte> v, Step step) noexcept {
  copy_bytes(sb.data(), v.data(), v.size());
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
  copy_bytes(dst, v.data(), half);
  step();
  copy_bytes(dst + half, v.data() + half, v.size() - half);
  step();
  in.end();
}

// Recovery of op_assign: the target offset and length the record names, for the container
// to check (is it live, of that length?) before it calls redo_assign with the bytes.
inline std::uint64_t assign_target(const Intent& in) noexcept { return in.index.load(); }
inline std::uint64_t assign_length(const Intent& in) noexcept { return in.size_before.load(); }
// Copies the staged value again over `dst` when `sb` holds it, then ends the record.
void redo_assign(Intent& in, ScratchBlock* sb, std::byte* dst) noexcept;

}  // namespace mpp::detail
