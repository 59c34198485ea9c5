#include "mpp/queue.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>

#include <sched.h>

namespace mpp::detail {
namespace {

// Record kinds in the ring.
constexpr std::uint32_t kInline = 1;  // payload follows the 8-byte header
constexpr std::uint32_t kHeap = 2;    // a HeapRef follows: the payload is in a heap block
constexpr std::uint32_t kPad = 3;     // skip to the start of the ring

struct RecordHeader {
  std::uint32_t size;  // payload bytes (inline), 16 (heap), bytes to the ring's end (pad)
  std::uint32_t kind;
};
struct HeapRef {
  std::uint64_t offset;  // segment offset of the block
  std::uint64_t size;    // payload bytes
};
constexpr std::uint32_t kHeader = sizeof(RecordHeader);

constexpr std::uint32_t round8(std::uint64_t n) { return static_cast<std::uint32_t>((n + 7) & ~std::uint64_t{7}); }

// A head or tail word: messages so far << 32 | byte position, both modulo 2^32.
constexpr std::uint32_t pos_of(std::uint64_t w) { return static_cast<std::uint32_t>(w); }
constexpr std::uint32_t msgs_of(std::uint64_t w) { return static_cast<std::uint32_t>(w >> 32); }
constexpr std::uint64_t word(std::uint32_t msgs, std::uint32_t pos) {
  return std::uint64_t{msgs} << 32 | pos;
}

constexpr std::size_t kStateBytes = (sizeof(QueueState) + 63) & ~std::size_t{63};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long a blocked caller spins before it sleeps on a futex. A futex wake-up of an idle
// core costs 5-45 us on a VM and a cache-line transfer ~0.05 us: a peer that answers within
// the spin is caught without a system call, while an idle queue costs at most this much CPU
// per blocked call and nothing once asleep. The budget adapts per handle between a floor and
// a ceiling: it grows to twice the longest wait that spinning caught and halves when the
// caller had to sleep anyway. The floor matters: a budget allowed to shrink towards zero
// (as it could before) never catches a busy peer again, so every message of a ping-pong paid
// two futex round trips (31 us measured against 4.9 us for a raw futex ping-pong).
constexpr std::uint32_t kSpinMinNs = 10'000;
constexpr std::uint32_t kSpinMaxNs = 50'000;
constexpr unsigned kMaxBackoff = 16;  // pause instructions between two polls, at most
// After this long spinning, each poll also yields the CPU: on an oversubscribed machine the
// peer we wait for may be queued behind us on this very core, and a pure pause loop would
// keep it from running for the whole budget.
constexpr std::uint32_t kYieldAfterNs = 3'000;

// The longest a blocked caller sleeps before it looks again by itself (see block_until).
constexpr auto kMaxSleep = std::chrono::milliseconds(100);

// Holds a queue lock. The critical sections are a few cache lines long, so a contended
// lock is tried for a short while before RobustMutex::lock, whose robust pthread mutex goes
// straight to a futex sleep (a system call on both sides) when it is held.
class QueueLockGuard {
 public:
  QueueLockGuard(RobustMutex& m, const RobustMutex::Recover& recover) : m_(m) {
    for (int i = 0; i < 200; ++i) {
      if (m_.try_lock(recover)) return;
      cpu_relax();
    }
    m_.lock(recover);
  }
  ~QueueLockGuard() { m_.unlock(); }
  QueueLockGuard(const QueueLockGuard&) = delete;
  QueueLockGuard& operator=(const QueueLockGuard&) = delete;

 private:
  RobustMutex& m_;
};

// Wakes every sleeper on `w` if one announced itself (the low bit). The state change being
// announced must be stored before this is called; the fence orders that store before the
// read of the bit (a sleeper sets the bit, then re-checks the state: one of the two sees
// the other).
void notify(std::atomic<std::uint32_t>& w) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint32_t v = w.load(std::memory_order_relaxed);
  while (v & 1u) {
    if (w.compare_exchange_weak(v, (v + 2u) & ~1u, std::memory_order_seq_cst)) {
      futex_wake_all(w);
      return;
    }
  }
}

// The blocking loop shared by put, get and join: try; spin while `changed` says nothing
// happened; announce a sleeper on `w` and try once more (so a notify between the failed
// try and the announcement is not lost); sleep. Returns false when the deadline passed.
template <class Attempt, class Changed>
bool block_until(Attempt&& attempt, Changed&& changed, std::atomic<std::uint32_t>& w,
                 std::optional<Clock::time_point> deadline, std::uint32_t& spin_ns) {
  if (attempt()) return true;
  if (deadline && Clock::now() >= *deadline) return false;
  const auto spin_start = Clock::now();
  auto spin_end = spin_start + std::chrono::nanoseconds(spin_ns);
  if (deadline && *deadline < spin_end) spin_end = *deadline;
  const auto yield_from = spin_start + std::chrono::nanoseconds(kYieldAfterNs);
  // Poll with exponential backoff: a caller that polls the peer's cache line on every
  // message makes that line (and the record's) travel between cores per message; waiting a
  // little lets the peer write several records before we look again.
  for (unsigned backoff = 1;; backoff = std::min(backoff * 2, kMaxBackoff)) {
    if (changed() && attempt()) {
      auto waited = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - spin_start);
      auto want = static_cast<std::uint32_t>(std::min<std::int64_t>(kSpinMaxNs, 2 * waited.count()));
      spin_ns = std::max(spin_ns, want);
      return true;
    }
    for (unsigned k = 0; k < backoff; ++k) cpu_relax();
    auto now = Clock::now();
    if (now >= spin_end) break;
    if (now >= yield_from) sched_yield();
  }
  spin_ns = std::max(kSpinMinNs, spin_ns / 2);
  for (;;) {
    std::uint32_t key = w.fetch_or(1u, std::memory_order_seq_cst) | 1u;
    if (attempt()) return true;
    auto now = Clock::now();
    if (deadline && now >= *deadline) return false;
    // Sleep in slices: a peer SIGKILLed between its publishing store and its wake-up call
    // would otherwise leave us asleep beside a message (or free room) forever.
    auto until = now + kMaxSleep;
    futex_wait(w, key, deadline && *deadline < until ? *deadline : until);
  }
}

}  // namespace

std::size_t QueueCore::state_bytes(std::size_t ring_bytes) { return kStateBytes + ring_bytes; }

std::size_t QueueCore::default_ring_bytes(std::size_t segment_bytes) {
  std::size_t want = std::clamp<std::size_t>(segment_bytes / 8, 4096, std::size_t{4} << 20);
  return std::bit_floor(want);
}

QueueCore::QueueCore(std::shared_ptr<Segment> seg, QueueState* st)
    : seg_(std::move(seg)), st_(st), ring_(seg_->at<std::byte>(st->ring_offset)),
      put_recover_([s = seg_.get(), q = st] { recover_put(*s, *q); }) {}

QueueCore QueueCore::named(std::shared_ptr<Segment> segment, std::string_view name,
                           ObjectKind kind, std::size_t maxsize, std::size_t ring_bytes,
                           const std::string& value_type) {
  if (ring_bytes == 0) {
    // A queue in a Manager shares the segment with other objects: a modest ring, since
    // large messages and overflow go to the heap anyway.
    ring_bytes = std::bit_floor(
        std::clamp<std::size_t>(segment->free_bytes() / 16, 4096, std::size_t{1} << 20));
  }
  if (ring_bytes < 1024 || ring_bytes > (std::size_t{1} << 31) || !std::has_single_bit(ring_bytes)) {
    throw ValueError("a queue's ring must be a power of two between 1 KiB and 2 GiB, not " +
                     std::to_string(ring_bytes) + " bytes");
  }
  Segment* seg = segment.get();
  Segment::ObjectSpec spec{name, kind, "", value_type, state_bytes(ring_bytes), 64};
  auto [mem, created] = seg->find_or_create(spec, [&](void* p) {
    std::uint64_t ring_off = seg->offset_of(p) + kStateBytes;
    std::uint64_t inline_max = std::min<std::uint64_t>(ring_bytes / 4, 65536);
    new (p) QueueState(kind, ring_off, static_cast<std::uint32_t>(ring_bytes), maxsize, inline_max);
  });
  (void)created;
  return QueueCore(std::move(segment), static_cast<QueueState*>(mem));
}

QueueCore QueueCore::standalone(ObjectKind kind, std::size_t maxsize, std::size_t capacity,
                                const std::string& value_type) {
  std::size_t ring = default_ring_bytes(capacity);
  if (capacity < 2 * state_bytes(ring) + 65536) {
    throw ValueError("a queue's capacity must be at least " +
                     std::to_string(2 * state_bytes(ring) + 65536) + " bytes, not " +
                     std::to_string(capacity));
  }
  return named(Segment::anonymous(capacity), "", kind, maxsize, ring, value_type);
}

void QueueCore::recover_put(Segment& seg, QueueState& s) noexcept {
  // A producer died holding the put lock. Everything it wrote past `tail` is invisible;
  // the only thing to repair is a heap block it allocated for a message it had not
  // published (tail still where it was when it started).
  std::uint64_t block = s.pending_block.load(std::memory_order_relaxed);
  if (block != 0) {
    if (s.tail.load(std::memory_order_relaxed) == s.pending_tail.load(std::memory_order_relaxed)) {
      seg.deallocate(seg.at(block));
    }
    s.pending_block.store(0, std::memory_order_relaxed);
  }
}

void QueueCore::put(ByteView payload, std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  const std::uint32_t R = s.ring_bytes;
  const bool large = payload.size() > s.inline_max;
  constexpr std::uint32_t kRefRecord = kHeader + sizeof(HeapRef);
  if (large && payload.size() > seg_->size()) {
    throw SegmentFull("a message of " + std::to_string(payload.size()) +
                      " bytes can never fit in a queue whose segment has " +
                      std::to_string(seg_->size()) + " bytes; make the queue with a larger capacity");
  }
  std::uint64_t seen_head = 0;  // the head seen when the last attempt failed

  auto attempt = [&]() -> bool {
    QueueLockGuard g(s.header.mutex, put_recover_);
    const std::uint64_t t = s.tail.load(std::memory_order_relaxed);
    const std::uint32_t tpos = pos_of(t);
    // The consumers' `head` is read only when the cached copy says "no room": on the fast
    // path a producer touches no cache line that consumers write.
    if (s.maxsize != 0 && std::uint32_t(msgs_of(t) - msgs_of(s.cached_head)) >= s.maxsize) {
      s.cached_head = seen_head = s.head.load(std::memory_order_acquire);
      if (std::uint32_t(msgs_of(t) - msgs_of(seen_head)) >= s.maxsize) return false;
    }
    const std::uint32_t idx = tpos & (R - 1);
    const std::uint32_t contig = R - idx;
    auto need_for = [&](std::uint32_t rec) { return rec <= contig ? rec : contig + rec; };
    bool on_heap = large;
    std::uint32_t rec = on_heap ? kRefRecord : kHeader + round8(payload.size());
    std::uint32_t need = need_for(rec);
    if (R - std::uint32_t(tpos - pos_of(s.cached_head)) < need) {
      s.cached_head = seen_head = s.head.load(std::memory_order_acquire);
      std::uint32_t room = R - std::uint32_t(tpos - pos_of(seen_head));
      if (room < need) {
        // A full ring still takes a small message by reference to a heap block, so an
        // unbounded queue is bounded by its segment, not by its ring.
        if (on_heap || room < need_for(kRefRecord)) return false;
        on_heap = true;
        rec = kRefRecord;
        need = need_for(rec);
      }
    }
    std::uint32_t at = idx;
    if (rec > contig) {
      // Pad to the end; the record goes at the start. Both become visible with one store.
      RecordHeader pad{contig, kPad};
      std::memcpy(ring_ + idx, &pad, sizeof pad);
      at = 0;
    }
    if (on_heap) {
      // Intent first: a producer killed between allocate and publish leaves a note that
      // recover_put() uses to free the block.
      s.pending_tail.store(t, std::memory_order_relaxed);
      void* block;
      try {
        block = seg_->allocate(payload.size(), 16);
      } catch (const SegmentFull&) {
        // Space is freed as consumers take heap messages: wait for them while any is
        // queued. With none queued, only a consumer still freeing the last one's block can
        // help; they free under the get lock, so taking it once lets that finish.
        seen_head = s.head.load(std::memory_order_acquire);
        if (std::uint32_t(msgs_of(t) - msgs_of(seen_head)) != 0) return false;
        { QueueLockGuard drained(s.get_mutex, {}); }
        block = seg_->allocate(payload.size(), 16);  // SegmentFull now means it never fits
      }
      std::uint64_t off = seg_->offset_of(block);
      s.pending_block.store(off, std::memory_order_relaxed);
      std::memcpy(block, payload.data(), payload.size());
      HeapRef ref{off, payload.size()};
      RecordHeader rh{sizeof ref, kHeap};
      std::memcpy(ring_ + at, &rh, sizeof rh);
      std::memcpy(ring_ + at + kHeader, &ref, sizeof ref);
    } else {
      RecordHeader rh{static_cast<std::uint32_t>(payload.size()), kInline};
      std::memcpy(ring_ + at, &rh, sizeof rh);
      if (!payload.empty()) std::memcpy(ring_ + at + kHeader, payload.data(), payload.size());
    }
    const std::uint32_t msgs = msgs_of(t) + 1;
    s.tail.store(word(msgs, tpos + need), std::memory_order_release);  // publishes
    if (on_heap) s.pending_block.store(0, std::memory_order_relaxed);
    if ((msgs & 63u) == 0) {
      s.header.count.store(std::uint32_t(msgs - msgs_of(s.cached_head)), std::memory_order_relaxed);
    }
    return true;
  };
  auto changed = [&] { return s.head.load(std::memory_order_relaxed) != seen_head; };
  if (!block_until(attempt, changed, s.not_full, deadline, spin_ns_)) {
    throw Full(s.maxsize != 0 ? "the queue is full (maxsize " + std::to_string(s.maxsize) + ")"
                              : "the queue has no room for a message of " +
                                    std::to_string(payload.size()) + " bytes");
  }
  notify(s.not_empty);
}

void QueueCore::get(Consume consume, void* ctx, std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  const std::uint32_t R = s.ring_bytes;
  std::uint64_t seen_tail = 0;  // the tail seen when the last attempt failed
  void* to_free = nullptr;
  std::exception_ptr failed;

  auto attempt = [&]() -> bool {
    QueueLockGuard g(s.get_mutex, {});
    std::uint64_t h = s.head.load(std::memory_order_relaxed);
    std::uint64_t t = s.cached_tail;
    if (pos_of(h) == pos_of(t)) {
      t = s.cached_tail = seen_tail = s.tail.load(std::memory_order_acquire);
      if (pos_of(h) == pos_of(t)) return false;
    }
    std::uint32_t pos = pos_of(h);
    RecordHeader rh;
    std::memcpy(&rh, ring_ + (pos & (R - 1)), sizeof rh);
    if (rh.kind == kPad) {
      pos += rh.size;  // a pad is always published together with the record after it
      std::memcpy(&rh, ring_ + (pos & (R - 1)), sizeof rh);
    }
    const std::uint32_t idx = pos & (R - 1);
    const std::byte* body = ring_ + idx + kHeader;
    ByteView bytes;
    if (rh.kind == kInline && rh.size <= R - idx - kHeader) {
      bytes = ByteView(body, rh.size);
    } else if (rh.kind == kHeap && rh.size == sizeof(HeapRef)) {
      HeapRef ref;
      std::memcpy(&ref, body, sizeof ref);
      if (ref.offset >= seg_->size() || ref.size > seg_->size() - ref.offset) {
        throw SegmentError("a queue record points outside its segment; the queue is corrupt");
      }
      to_free = seg_->at(ref.offset);
      bytes = ByteView(static_cast<const std::byte*>(to_free), ref.size);
    } else {
      throw SegmentError("a queue record has an invalid header (kind " + std::to_string(rh.kind) +
                         ", size " + std::to_string(rh.size) + "); the queue is corrupt");
    }
    // The message is copied out while still in the queue: a consumer killed here leaves
    // it for the next one. It is taken by the one store of head below.
    try {
      consume(ctx, bytes);
    } catch (...) {
      failed = std::current_exception();  // undecodable: dropped, as Python drops it
    }
    s.head.store(word(msgs_of(h) + 1, pos + kHeader + round8(rh.size)), std::memory_order_release);
    // Freed under the lock (a producer that finds the heap full relies on it); killed
    // between the store and the free, the block leaks.
    if (to_free) seg_->deallocate(to_free);
    return true;
  };
  auto changed = [&] { return s.tail.load(std::memory_order_relaxed) != seen_tail; };
  if (!block_until(attempt, changed, s.not_empty, deadline, spin_ns_)) {
    throw Empty("the queue is empty");
  }
  notify(s.not_full);
  if (failed) std::rethrow_exception(failed);
}

std::size_t QueueCore::qsize() const noexcept {
  std::uint64_t h = st_->head.load(std::memory_order_acquire);
  std::uint64_t t = st_->tail.load(std::memory_order_acquire);
  return std::uint32_t(msgs_of(t) - msgs_of(h));
}

bool QueueCore::full() const noexcept { return st_->maxsize != 0 && qsize() >= st_->maxsize; }

void QueueCore::task_done() {
  QueueState& s = *st_;
  std::uint32_t done = s.tasks_done.load(std::memory_order_relaxed);
  for (;;) {
    std::uint32_t puts = msgs_of(s.tail.load(std::memory_order_acquire));
    if (done == puts) {
      throw ValueError("task_done() called more times than there were items put in the queue");
    }
    if (s.tasks_done.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) {
      if (done + 1 == puts) notify(s.all_done);
      return;
    }
  }
}

void QueueCore::join(std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  auto finished = [&] {
    return s.tasks_done.load(std::memory_order_acquire) ==
           msgs_of(s.tail.load(std::memory_order_acquire));
  };
  if (!block_until(finished, finished, s.all_done, deadline, spin_ns_)) {
    throw TimeoutError("join(): tasks are still unfinished");
  }
}

std::string walk_queue(const QueueState& s, const std::byte* ring, std::uint64_t segment_size,
                       const std::function<bool(const QueueRecord&)>& visit,
                       std::uint32_t* messages) {
  const std::uint32_t R = s.ring_bytes;
  if (!std::has_single_bit(R)) return "the ring size is not a power of two";
  std::uint64_t h = s.head.load(), t = s.tail.load();
  std::uint32_t used = pos_of(t) - pos_of(h);
  if (used > R) return "head and tail are " + std::to_string(used) + " bytes apart in a ring of " + std::to_string(R);
  std::uint32_t msgs = 0;
  bool visiting = true;
  for (std::uint32_t pos = pos_of(h); pos != pos_of(t);) {
    std::uint32_t idx = pos & (R - 1);
    std::uint32_t left = pos_of(t) - pos;
    if (left < kHeader || (idx & 7u) != 0) return "a record is cut short or misaligned at " + std::to_string(pos);
    RecordHeader rh;
    std::memcpy(&rh, ring + idx, sizeof rh);
    std::uint32_t len;
    if (rh.kind == kPad) {
      if (rh.size != R - idx) return "a pad does not reach the ring's end at " + std::to_string(pos);
      len = rh.size;
    } else if (rh.kind == kInline || rh.kind == kHeap) {
      if (rh.size > R) return "a record is longer than the ring at " + std::to_string(pos);
      len = kHeader + round8(rh.size);
      if (len > R - idx) return "a record runs past the ring's end at " + std::to_string(pos);
      QueueRecord rec;
      if (rh.kind == kHeap) {
        HeapRef ref;
        if (rh.size != sizeof ref) return "a heap record has a bad size at " + std::to_string(pos);
        std::memcpy(&ref, ring + idx + kHeader, sizeof ref);
        if (ref.offset >= segment_size || ref.size > segment_size - ref.offset) {
          return "a heap record points outside the segment at " + std::to_string(pos);
        }
        rec.in_heap = true;
        rec.heap_offset = ref.offset;
        rec.heap_size = ref.size;
      } else {
        rec.inline_bytes = ByteView(ring + idx + kHeader, rh.size);
      }
      if (visiting && visit) visiting = visit(rec);
      ++msgs;
    } else {
      return "a record has an unknown kind " + std::to_string(rh.kind) + " at " + std::to_string(pos);
    }
    if (len > left) return "a record runs past the tail at " + std::to_string(pos);
    pos += len;
  }
  if (messages) *messages = msgs;
  if (msgs != std::uint32_t(msgs_of(t) - msgs_of(h))) {
    return "the ring holds " + std::to_string(msgs) + " messages but the counters say " +
           std::to_string(std::uint32_t(msgs_of(t) - msgs_of(h)));
  }
  return {};
}

std::string QueueCore::check() const {
  QueueState& s = *st_;
  RobustLockGuard pg(s.header.mutex, put_recover_);
  RobustLockGuard gg(s.get_mutex);
  if (s.pending_block.load() != 0) return "a producer's intent record was left behind";
  std::uint32_t msgs = 0;
  std::string problem = walk_queue(s, ring_, seg_->size(), {}, &msgs);
  if (problem.empty()) s.header.count.store(msgs, std::memory_order_relaxed);
  return problem;
}

}  // namespace mpp::detail
