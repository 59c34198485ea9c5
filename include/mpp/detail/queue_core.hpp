// The untyped engine under Queue<T>, JoinableQueue<T> and SimpleQueue<T>: a ring of
// fixed-size slots in a segment, in the style of Dmitry Vyukov's bounded MPMC queue, with no
// lock on the message path. See README.md, "Queue", for the design and the argument that a
// SIGKILL at any instruction leaves it valid.
//
// Layout (QueueState, then the slots, in one block of the segment's heap):
//
//   ObjectHeader header        header.count: a depth hint for mpp-inspect; the mutex is unused
//   immutable: slots' offset and bytes, maxsize, kind
//   tail   (own cache line)    positions claimed by producers so far (never wraps)
//   head   (own cache line)    positions claimed by consumers so far (<= tail)
//   futex words                not_empty, not_full, all_done (sequence << 1 | sleeper bit)
//   tasks_done, skipped        JoinableQueue: task_done() calls, and messages lost to
//                              producers killed before publishing
//
// Position p lives in slot p % slot_count. A slot's `state` word is (28-bit lap-relative
// sequence << 36 | owner of the claim, 0 if none; the owner is the claimer's pid in 22 bits
// and 14 bits of its start time above them, so a reused pid does not pass for a dead
// claimer), so a claim and its owner are set by one compare-and-swap. With r = p - p % slot_count (the slot's lap base):
//   r, pid 0       free for the producer of p
//   r, pid         being written by that producer
//   r + 1, pid 0   holds the message of p
//   r + 1, pid     being read by that consumer
//   r + 2, pid     that producer died: its claim is being skipped, the skip not yet counted
//   r + 3, pid     the skip counted (QueueState::skipped), the slot about to be freed
//   r + N, pid 0   free for the producer of p + N (N = slot_count)
// A zero-filled slot array is thus an empty queue. A payload of up to kInlineBytes is in
// the slot; a larger one is in a heap block whose offset the slot holds (`block`, non-zero
// only while a message owns a block).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/futex.hpp"
#include "mpp/detail/robust_mutex.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"

namespace mpp::detail {

// One slot of the ring: 128 bytes, two cache lines.
struct alignas(64) QueueSlot {
  static constexpr std::size_t kInlineBytes = 104;

  std::atomic<std::uint64_t> state{0};  // sequence << 36 | claimer (pid, start ticks)
  std::atomic<std::uint64_t> block{0};  // segment offset of the payload's heap block, or 0
                                        // (0: the payload is inline, in `payload`); the
                                        // block is a QueueBlock header, then the payload
  std::uint64_t size = 0;               // payload bytes
  std::byte payload[kInlineBytes];
};
static_assert(sizeof(QueueSlot) == 128);

// The header of a heap block that holds a large payload (which follows it). Blocks are
// recycled through QueueState::spare, so they carry their own capacity.
struct QueueBlock {
  std::uint64_t capacity = 0;  // payload bytes the block can hold
  std::uint64_t reserved = 0;
};
static_assert(sizeof(QueueBlock) == 16);

struct QueueState {
  static constexpr int kSpares = 8;

  ObjectHeader header;

  // Set at construction, never changed.
  std::uint64_t ring_offset = 0;  // segment offset of the slots
  std::uint32_t ring_bytes = 0;   // slot_count * sizeof(QueueSlot), a power of two
  std::uint32_t kind = 0;         // ObjectKind
  std::uint64_t maxsize = 0;      // 0: bounded only by the slot count
  std::uint64_t slot_count = 0;   // a power of two, >= 8

  alignas(64) std::atomic<std::uint64_t> tail{0};
  alignas(64) std::atomic<std::uint64_t> head{0};

  // Futex words, each on its own line: sequence << 1 | "someone sleeps" bit.
  alignas(64) std::atomic<std::uint32_t> not_empty{0};
  alignas(64) std::atomic<std::uint32_t> not_full{0};
  alignas(64) std::atomic<std::uint32_t> all_done{0};
  std::atomic<std::uint64_t> tasks_done{0};
  std::atomic<std::uint64_t> skipped{0};  // positions claimed by producers that died: the
                                          // count << 25 | pending slot + 1 (queue_core.cpp)

  // Blocks freed by consumers, kept for producers (segment offsets, 0: none): a block goes
  // from consumer to producer with one exchange each, without the heap's lock, and its pages
  // are already mapped. Owned by the queue; dropped back to the heap when it runs short.
  alignas(64) std::atomic<std::uint64_t> spare[kSpares] = {};

  QueueState(ObjectKind k, std::uint64_t ring_off, std::uint32_t ring_size, std::uint64_t max)
      : ring_offset(ring_off), ring_bytes(ring_size), kind(static_cast<std::uint32_t>(k)),
        maxsize(max), slot_count(ring_size / sizeof(QueueSlot)) {}
};

// One message as it sits in the ring: inline bytes, or a reference to a heap block.
struct QueueRecord {
  bool in_heap = false;
  ByteView inline_bytes;          // !in_heap: the payload, inside the slot
  std::uint64_t heap_offset = 0;  // in_heap: segment offset and size of the payload
  std::uint64_t heap_size = 0;
};

// Walks the published messages of a queue, oldest first, reading only `s` and the
// `ring_bytes` bytes at `ring`, and checking every slot's state (and that heap records point
// inside a segment of `segment_size` bytes). Calls visit(record) for each message until it
// returns false. Returns what is wrong, or empty; *messages gets the depth (tail - head,
// which counts slots still being written). Takes no lock: exact only while nobody puts or
// gets (QueueCore::check() in a test, mpp-inspect on a snapshot may see a put in flight).
std::string walk_queue(const QueueState& s, const std::byte* ring, std::uint64_t segment_size,
                       const std::function<bool(const QueueRecord&)>& visit,
                       std::uint32_t* messages = nullptr);

// For crash tests only: when set, called at the named points of put and get (in the process
// that set it), so a test can SIGKILL a process exactly there. Never set in production.
enum class QueueCrashPoint {
  put_claimed,     // the slot is claimed, tail not yet advanced
  put_filling,     // tail advanced, payload (or its block) half written
  get_claimed,     // the slot is claimed for reading, head not yet advanced
  get_consumed,    // the message was handed over, its slot not yet released
  get_released,    // the slot is free again, its heap block not yet freed
  repair_taken,    // a dead process's claim was taken over, the slot not yet released
};
inline void (*queue_crash_hook)(QueueCrashPoint) = nullptr;

// A handle on one queue's state in a segment. Copies share the queue (and the segment).
class QueueCore {
 public:
  // The default capacity of a standalone queue's anonymous segment. Address space only:
  // pages cost memory once a message has touched them.
  static constexpr std::size_t default_capacity = std::size_t{128} << 20;

  // How many bytes a queue's state plus its ring take in a segment.
  static std::size_t state_bytes(std::size_t ring_bytes);
  // The ring of a standalone queue whose anonymous segment has `segment_bytes`.
  static std::size_t default_ring_bytes(std::size_t segment_bytes);

  // A queue in a fresh anonymous segment of `capacity` bytes, for sharing with children
  // forked later. Throws ValueError for a capacity too small to hold it.
  static QueueCore standalone(ObjectKind kind, std::size_t maxsize, std::size_t capacity,
                              const std::string& value_type);
  // The named queue `name` in `segment`, made if missing (ring of `ring_bytes`, 0 for the
  // default). Throws TypeMismatch when it exists with another kind or value type,
  // SegmentFull, ValueError.
  static QueueCore named(std::shared_ptr<Segment> segment, std::string_view name,
                         ObjectKind kind, std::size_t maxsize, std::size_t ring_bytes,
                         const std::string& value_type);

  // Puts one message. `deadline` nullopt blocks as long as needed; a deadline in the past
  // is put_nowait. Throws Full when there is no room in time, SegmentFull when the message
  // can never fit.
  void put(ByteView payload, std::optional<Clock::time_point> deadline);

  // Takes the oldest message and hands its bytes to `consume(ctx, bytes)`, in place (in its
  // slot or heap block); the bytes are valid until consume returns. The message is taken
  // before consume is called: if consume throws, the message is dropped and the exception
  // rethrown; if the process dies inside consume, the message is lost (never delivered
  // twice). Throws Empty when nothing came in time.
  using Consume = void (*)(void* ctx, ByteView bytes);
  void get(Consume consume, void* ctx, std::optional<Clock::time_point> deadline);

  std::size_t qsize() const noexcept;
  std::size_t maxsize() const noexcept { return st_->maxsize; }
  bool full() const noexcept;

  // JoinableQueue.
  void task_done();
  // Positions whose producer died before publishing (never counted as puts).
  std::uint64_t skipped() const noexcept;
  void join(std::optional<Clock::time_point> deadline);

  // Checks every slot and the counters. Returns an empty string when the queue is valid,
  // else what is wrong. Exact while nobody puts or gets; slots claimed by dead processes
  // are valid (the next put or get that meets them repairs them).
  std::string check() const;

  QueueState& state() const noexcept { return *st_; }
  Segment& segment() const noexcept { return *seg_; }

 private:
  QueueCore(std::shared_ptr<Segment> seg, QueueState* st);
  QueueSlot& slot(std::uint64_t pos) const noexcept { return slots_[pos & (st_->slot_count - 1)]; }
  bool repair(QueueSlot& slot, std::uint64_t state, std::uint64_t pos) const;
  void count_skip(std::uint64_t index) const;
  void clear_pending(std::uint64_t index) const;
  void release(QueueSlot& slot, std::uint64_t free_seq) const;
  bool valid_block(std::uint64_t offset, std::uint64_t size) const noexcept;
  QueueBlock* take_block(std::size_t size) const;
  void recycle_block(std::uint64_t offset) const noexcept;
  bool drop_spares() const noexcept;

  std::shared_ptr<Segment> seg_;
  QueueState* st_ = nullptr;
  QueueSlot* slots_ = nullptr;
  std::uint32_t spin_ns_ = 20'000;  // this handle's adaptive spin before sleeping (ns)
};

}  // namespace mpp::detail
