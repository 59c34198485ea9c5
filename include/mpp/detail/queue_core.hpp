// The untyped engine under Queue<T>, JoinableQueue<T> and SimpleQueue<T>: a byte ring of
// framed records in a segment, with one robust lock for producers and one for consumers,
// and futex words for sleeping. See README.md, "Queue", for the design and the argument
// that a SIGKILL at any instruction leaves it valid.
//
// Layout (QueueState, then the ring, in one block of the segment's heap):
//
//   ObjectHeader header        header.mutex is the PUT lock (producers)
//   immutable: ring offset and size, maxsize, inline limit, kind
//   tail   (one 64-bit word)   put_msgs << 32 | tail position; written under the put lock
//   put intent                 the heap block a producer is filling, and the tail it saw
//   get_mutex                  the GET lock (consumers)
//   head   (one 64-bit word)   get_msgs << 32 | head position; written under the get lock
//   futex words                not_empty, not_full, all_done (sequence << 1 | sleeper bit)
//   tasks_done                 JoinableQueue: task_done() calls so far
//
// The ring holds records of 8-byte-aligned length: {u32 size, u32 kind} then the payload
// (inline), or a 16-byte reference {u64 block offset, u64 size} to a heap block (large
// messages), or a pad that skips to the ring's start. Positions are byte counters modulo
// 2^32; the ring's size is a power of two, so position % size is the index.
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

struct QueueState {
  ObjectHeader header;  // header.mutex: the put lock

  // Set at construction, never changed.
  std::uint64_t ring_offset = 0;  // segment offset of the ring
  std::uint32_t ring_bytes = 0;   // a power of two
  std::uint32_t kind = 0;         // ObjectKind
  std::uint64_t maxsize = 0;      // 0: bounded only by the ring and the segment
  std::uint64_t inline_max = 0;   // larger payloads go to a heap block

  // Producers' cache line.
  alignas(64) std::atomic<std::uint64_t> tail{0};
  std::atomic<std::uint64_t> pending_block{0};  // intent: a heap block not yet published
  std::atomic<std::uint64_t> pending_tail{0};   // the tail it was to be published after
  std::uint64_t cached_head = 0;                // a head seen by a producer (<= head)

  // Consumers' cache line.
  alignas(64) RobustMutex get_mutex;
  alignas(64) std::atomic<std::uint64_t> head{0};
  std::uint64_t cached_tail = 0;  // a tail seen by a consumer (<= tail)

  // Futex words, each on its own line: sequence << 1 | "someone sleeps" bit.
  alignas(64) std::atomic<std::uint32_t> not_empty{0};
  alignas(64) std::atomic<std::uint32_t> not_full{0};
  alignas(64) std::atomic<std::uint32_t> all_done{0};
  std::atomic<std::uint32_t> tasks_done{0};  // mod 2^32, as put_msgs

  QueueState(ObjectKind k, std::uint64_t ring_off, std::uint32_t ring_size, std::uint64_t max,
             std::uint64_t inline_limit)
      : ring_offset(ring_off), ring_bytes(ring_size), kind(static_cast<std::uint32_t>(k)),
        maxsize(max), inline_max(inline_limit) {}
};

// One message as it sits in the ring: inline bytes, or a reference to a heap block.
struct QueueRecord {
  bool in_heap = false;
  ByteView inline_bytes;        // !in_heap: the payload, inside the ring
  std::uint64_t heap_offset = 0;  // in_heap: segment offset and size of the payload
  std::uint64_t heap_size = 0;
};

// Walks the committed records of a queue, oldest first, reading only `s` and the
// `ring_bytes` bytes at `ring`, and checking each record's framing (and that heap records
// point inside a segment of `segment_size` bytes). Calls visit(record) for each message
// until it returns false. Returns what is wrong, or empty; *messages gets the count seen.
// Takes no lock: QueueCore::check() calls it under both locks, mpp-inspect on a snapshot.
std::string walk_queue(const QueueState& s, const std::byte* ring, std::uint64_t segment_size,
                       const std::function<bool(const QueueRecord&)>& visit,
                       std::uint32_t* messages = nullptr);

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

  // Takes the oldest message and hands its bytes to `consume(ctx, bytes)` while they are
  // still in the queue; the message counts as taken once consume returns (or throws, which
  // drops it and rethrows). Throws Empty when nothing came in time.
  using Consume = void (*)(void* ctx, ByteView bytes);
  void get(Consume consume, void* ctx, std::optional<Clock::time_point> deadline);

  std::size_t qsize() const noexcept;
  std::size_t maxsize() const noexcept { return st_->maxsize; }
  bool full() const noexcept;

  // JoinableQueue.
  void task_done();
  void join(std::optional<Clock::time_point> deadline);

  // Walks the ring under both locks and checks every record. Returns an empty string when
  // the queue is valid, else what is wrong.
  std::string check() const;

  QueueState& state() const noexcept { return *st_; }
  Segment& segment() const noexcept { return *seg_; }

 private:
  QueueCore(std::shared_ptr<Segment> seg, QueueState* st);
  std::byte* ring() const noexcept { return ring_; }
  static void recover_put(Segment& seg, QueueState& s) noexcept;

  std::shared_ptr<Segment> seg_;
  QueueState* st_ = nullptr;
  std::byte* ring_ = nullptr;
  RobustMutex::Recover put_recover_;  // recover_put for this queue; copies stay valid
  std::uint32_t spin_ns_ = 20'000;     // this handle's adaptive spin before sleeping (ns)
};

}  // namespace mpp::detail
