// The one-entry intent record of a shared container (docs/design/shared-memory.md and
// docs/design/crash-contracts.md). A change that allocates or frees more than one store can
// publish writes down, under the object's exclusive lock, which blocks it is about to make
// reachable ("fresh", and a "pending" chain of them linked through each block's first 8
// bytes) and which it is about to unlink and free ("old"). The next locker after a crash
// calls finish_intent():
//   - a fresh or pending block that is not reachable was never published: it is freed;
//   - an old block that is not reachable was unlinked and maybe freed: it is counted as
//     leaked (freeing it twice would corrupt the heap, leaking it costs bytes only);
//   - bytes asked of the allocator with no block recorded yet are counted as leaked.
// A record is read as valid only while `op` is not 0, and `op` is stored last: a change that
// needs more than "nothing yet" recorded (a removal's index and size) fills those fields with
// prepare() and then stores `op` with arm(), so a crash can never leave a half-written
// record that looks complete. The fields stored after `op` (fresh, pending, old,
// allocating) are each one word whose 0 means "nothing", so every prefix of their stores is
// a valid record. Each store is preceded by crash_step() (crash_step.hpp), the hook the
// store-by-store crash tests use.
// The layout is plain data, documented for mpp-inspect.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "mpp/detail/crash_step.hpp"

namespace mpp::detail {

class Segment;

struct Intent {
  std::atomic<std::uint32_t> op{0};  // 0: no change in progress; else the container's code
  std::uint32_t reserved = 0;
  std::atomic<std::uint64_t> allocating{0};  // bytes << 1 | fresh slot of an allocation in flight
  std::atomic<std::uint64_t> fresh[2] = {};  // offsets of blocks allocated, maybe unpublished
  std::atomic<std::uint64_t> pending{0};     // chain of fresh blocks (next at offset 0)
  std::atomic<std::uint64_t> old[2] = {};    // offsets of blocks being unlinked and freed
  std::atomic<std::uint64_t> old_bytes[2] = {};
  std::atomic<std::uint64_t> index{0};       // container-specific (a list's shift position)
  std::atomic<std::uint64_t> size_before{0};  // container-specific

  // Starts a change (all fields cleared, then `op` stored).
  void begin(std::uint32_t code) noexcept {
    prepare();
    arm(code);
  }
  // Clears every field while `op` is still 0 (nothing in progress), for a change that
  // records more before it becomes valid.
  void prepare() noexcept;
  // Makes the record valid: stores `op`, last. Inline (as is end()): two of the few stores
  // of every in-place set.
  void arm(std::uint32_t code) noexcept {
    crash_step();
    op.store(code, std::memory_order_release);
  }
  // Ends it: `op` cleared first, so a crash after it leaves nothing to redo.
  void end() noexcept {
    crash_step();
    op.store(0, std::memory_order_release);
  }
  // Allocates `bytes` in `seg` with the allocation recorded as fresh[slot] (SegmentFull
  // propagates; nothing is recorded then).
  void* allocate(Segment& seg, std::size_t bytes, int slot);
  // Allocates a block and pushes it on the pending chain.
  void* allocate_pending(Segment& seg, std::size_t bytes);
  // Records `offset` (of `bytes`) as about to be unlinked and freed.
  void retire(std::uint64_t offset, std::uint64_t bytes, int slot = 0) noexcept {
    crash_step();
    old_bytes[slot].store(bytes, std::memory_order_relaxed);
    crash_step();
    old[slot].store(offset, std::memory_order_relaxed);  // bytes first: old[] is the valid mark
  }
};

// Settles an interrupted change, as described above; `reachable(offset)` says whether the
// container's truth still refers to a block. Adds leaked bytes to `leaked`. Returns
// whether there was anything to settle.
bool finish_intent(Segment& seg, Intent& intent, std::atomic<std::uint64_t>& leaked,
                   const std::function<bool(std::uint64_t)>& reachable);

}  // namespace mpp::detail
