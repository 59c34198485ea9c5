#include "mpp/queue.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <new>
#include <utility>

#include "mpp/detail/crash_step.hpp"
#include "mpp/detail/process_identity.hpp"
#include "mpp/detail/shared_lock.hpp"
#include "mpp/detail/shm_bounds.hpp"
#include "mpp/detail/spin.hpp"

namespace mpp::detail {
namespace {

// A slot's state word: a 28-bit lap-relative sequence above a 36-bit owner. The owner is the
// claiming process's pid (22 bits: Linux pids are below 2^22) and, above it, the low 14 bits
// of its start time in clock ticks (process_identity.hpp), so that a claim whose holder died
// is not taken for a live one when its pid is reused (unless the new process also started at
// the same tick modulo 2^14, 164 s at 100 Hz). 28 bits of sequence are plenty: sequences are
// compared by their difference, and slots are at most a lap (at most 2^24 positions) apart.
constexpr unsigned kOwnerBits = 36, kOwnerPidBits = 22;
constexpr std::uint64_t kOwnerMask = (std::uint64_t{1} << kOwnerBits) - 1;
constexpr std::uint64_t kOwnerPidMask = (std::uint64_t{1} << kOwnerPidBits) - 1;
constexpr std::uint64_t kSeqMask = (std::uint64_t{1} << (64 - kOwnerBits)) - 1;
constexpr std::uint64_t seq_of(std::uint64_t st) { return st >> kOwnerBits; }
constexpr std::uint64_t owner_of(std::uint64_t st) { return st & kOwnerMask; }
constexpr pid_t pid_of(std::uint64_t st) { return static_cast<pid_t>(st & kOwnerPidMask); }
constexpr std::uint64_t make_state(std::uint64_t seq, std::uint64_t owner) {
  return (seq & kSeqMask) << kOwnerBits | owner;
}
// a - b for sequences modulo 2^28, as a signed number.
constexpr std::int64_t seq_diff(std::uint64_t a, std::uint64_t b) {
  return static_cast<std::int64_t>((a - b) << kOwnerBits) >> kOwnerBits;
}
// This process as a claim's owner.
std::uint64_t self_owner() noexcept {
  return static_cast<std::uint64_t>(self_pid()) |
         (self_start_ticks() & (kOwnerMask >> kOwnerPidBits)) << kOwnerPidBits;
}

constexpr std::size_t kStateBytes = (sizeof(QueueState) + 63) & ~std::size_t{63};

// QueueState::skipped: the count of skipped positions above a "pending" field, the index + 1
// of the slot whose skip was counted last while that slot's state may still say "not counted"
// (0: none). See repair().
constexpr unsigned kPendingBits = 25;  // slot indexes are below 2^24
constexpr std::uint64_t kPendingMask = (std::uint64_t{1} << kPendingBits) - 1;
constexpr std::uint64_t skip_count(std::uint64_t w) { return w >> kPendingBits; }
// A slot state of a skip being counted (lap + 2 or lap + 3, owned by its repairer).
constexpr bool skip_in_progress(std::uint64_t st, std::uint64_t n) {
  return owner_of(st) != 0 && seq_of(st) % n >= 2 && seq_of(st) % n <= 3;
}

inline void crash_point(QueueCrashPoint where) {
  if (queue_crash_hook) [[unlikely]] queue_crash_hook(where);
}

// Whether the owner of a claim is gone: no such process, a zombie (killed, not yet reaped),
// or another process that reuses its pid (a different start time). Only asked on the slow
// path, about a claim that has blocked us through a whole spin.
bool owner_gone(std::uint64_t owner) {
  const pid_t pid = static_cast<pid_t>(owner & kOwnerPidMask);
  const std::uint64_t ticks = owner >> kOwnerPidBits;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[32], buf[512];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');
  if (!paren || paren[1] != ' ') return false;
  if (paren[2] == 'Z' || paren[2] == 'X') return true;
  const std::uint64_t start = process_start_ticks(pid);
  return ticks != 0 && start != 0 && (start & (kOwnerMask >> kOwnerPidBits)) != ticks;
}

// The longest a blocked caller sleeps before it looks again by itself (see block_until).
constexpr auto kMaxSleep = std::chrono::milliseconds(100);

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
// try and the announcement is not lost); sleep. attempt(true) also repairs what a dead
// process left in the way (a system call or two): it is asked only once the spin is over,
// and before giving up at the deadline. Returns false when the deadline passed.
template <class Attempt, class Changed>
bool block_until(Attempt&& attempt, Changed&& changed, std::atomic<std::uint32_t>& w,
                 std::optional<Clock::time_point> deadline, std::uint32_t& spin_ns) {
  if (attempt(false)) return true;
  if (deadline && Clock::now() >= *deadline) return attempt(true);
  // The spin before a futex sleep: see detail/spin.hpp for the budget and why.
  if (spin_until([&] { return changed() && attempt(false); }, spin_ns, deadline)) return true;
  for (;;) {
    std::uint32_t key = w.fetch_or(1u, std::memory_order_seq_cst) | 1u;
    if (attempt(true)) return true;
    auto now = Clock::now();
    if (deadline && now >= *deadline) return false;
    // Sleep in slices: a peer SIGKILLed between its publishing store and its wake-up call
    // would otherwise leave us asleep beside a message (or free room) forever, and a claim
    // held by a dead process is noticed only by looking.
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

QueueCore::QueueCore(std::shared_ptr<Segment> seg, QueueState* st) : seg_(std::move(seg)), st_(st) {
  // The immutable layout is checked once, here; every later slot index is masked into it.
  const std::uint64_t n = st->slot_count;
  if (!std::has_single_bit(n) || n < 4 || n * sizeof(QueueSlot) != st->ring_bytes ||
      !in_heap(*seg_, st->ring_offset, st->ring_bytes, alignof(QueueSlot))) {
    throw_corrupt(*seg_, st, "queue", "its ring (offset " + std::to_string(st->ring_offset) + ", " +
                                          std::to_string(st->ring_bytes) + " bytes, " +
                                          std::to_string(n) + " slots) does not fit its segment");
  }
  slots_ = seg_->at<QueueSlot>(st->ring_offset);
}

// Whether `off` can be a payload block of at least `size` bytes: inside the heap, aligned,
// and its capacity (and `size`) within it. Offsets read from the segment are checked so
// before they are followed.
bool QueueCore::valid_block(std::uint64_t off, std::uint64_t size) const noexcept {
  if (!in_heap(*seg_, off, sizeof(QueueBlock))) return false;
  const std::uint64_t cap = seg_->at<QueueBlock>(off)->capacity;
  return size <= cap && cap <= seg_->size() && in_heap(*seg_, off, sizeof(QueueBlock) + cap);
}

QueueCore QueueCore::named(std::shared_ptr<Segment> segment, std::string_view name,
                           ObjectKind kind, std::size_t maxsize, std::size_t ring_bytes,
                           const std::string& value_type) {
  if (ring_bytes == 0) {
    // A queue in a Manager shares the segment with other objects: a modest ring, since
    // large messages go to the heap anyway. The ring's slots bound how many messages wait, so
    // a segment that can grow is sized by what it may grow to (up to 16 MiB counts), not by
    // its small start: an unbounded queue of a default Manager holds thousands of messages.
    const std::size_t room = std::max(segment->free_bytes(),
                                      std::min(segment->max_size(), std::size_t{16} << 20));
    ring_bytes = std::bit_floor(std::clamp<std::size_t>(room / 16, 4096, std::size_t{1} << 20));
  }
  if (ring_bytes < 1024 || ring_bytes > (std::size_t{1} << 31) || !std::has_single_bit(ring_bytes)) {
    throw ValueError("a queue's ring must be a power of two between 1 KiB and 2 GiB, not " +
                     std::to_string(ring_bytes) + " bytes");
  }
  Segment* seg = segment.get();
  // All-zero slots are an empty queue (free for lap 0). Zeroed memory from fresh heap space
  // costs nothing, so a new queue does not fault in its whole ring up front.
  Segment::ObjectSpec spec{name, kind, "", value_type, state_bytes(ring_bytes), 64, true};
  auto [mem, created] = seg->find_or_create(spec, [&](void* p) {
    std::uint64_t ring_off = seg->offset_of(p) + kStateBytes;
    new (p) QueueState(kind, ring_off, static_cast<std::uint32_t>(ring_bytes), maxsize);
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

// Frees a slot whose message is done with (read, or abandoned by a dead process) for the
// producer of `free_seq`'s position. The block is detached first and freed last: killed in
// between, it leaks; it is never freed twice.
void QueueCore::release(QueueSlot& sl, std::uint64_t free_seq) const {
  crash_step();
  std::uint64_t block = sl.block.exchange(0, std::memory_order_acq_rel);
  crash_step();
  sl.state.store(make_state(free_seq, 0), std::memory_order_release);
  crash_point(QueueCrashPoint::get_released);
  if (block != 0) recycle_block(block);
  notify(st_->not_full);
}

namespace {
// The capacity a new block gets for `size` payload bytes: rounded up (by at most 1/8), so
// that messages of about the same size can reuse each other's blocks.
std::size_t block_capacity(std::size_t size) {
  const std::size_t q = std::max<std::size_t>(64, std::bit_floor(size) / 8);
  return (size + q - 1) / q * q;
}
}  // namespace

// A block that holds `size` payload bytes: a spare one if one fits (not wasting more than
// 3/4 of it), else a new one from the heap; nullptr when the heap has no room. The caller
// owns it (killed before handing it to a slot, it leaks).
QueueBlock* QueueCore::take_block(std::size_t size) const {
  for (auto& sp : st_->spare) {
    std::uint64_t off = sp.load(std::memory_order_acquire);
    if (off == 0) continue;
    if (!valid_block(off, 0)) {  // a corrupt spare: dropped (leaked), never followed
      sp.compare_exchange_strong(off, 0, std::memory_order_acq_rel);
      continue;
    }
    const std::uint64_t cap = seg_->at<QueueBlock>(off)->capacity;  // may be stale: re-read below
    if (cap < size || cap / 4 > size) continue;
    if (!sp.compare_exchange_strong(off, 0, std::memory_order_acq_rel)) continue;
    if (valid_block(off, size)) return seg_->at<QueueBlock>(off);
    recycle_block(off);
  }
  const std::size_t cap = block_capacity(size);
  for (int round = 0; round < 2; ++round) {
    // The heap's free-byte count is a lock-free read: checking it first keeps a producer
    // that runs ahead of its consumers from throwing (and catching) a SegmentFull per
    // attempt, which costs microseconds each.
    if (seg_->free_bytes() >= cap + sizeof(QueueBlock) + 64) {
      try {
        return new (seg_->allocate(cap + sizeof(QueueBlock), 16)) QueueBlock{cap, 0};
      } catch (const SegmentFull&) {
      }
    }
    if (!drop_spares()) break;  // spares of other sizes go back to the heap; try again
  }
  return nullptr;
}

// Keeps a block for the next producer, or frees it when every spare place is taken.
void QueueCore::recycle_block(std::uint64_t off) const noexcept {
  if (!valid_block(off, 0)) return;  // not a block (a corrupt slot): leaked, never followed
  for (auto& sp : st_->spare) {
    std::uint64_t none = 0;
    if (sp.load(std::memory_order_relaxed) == 0 &&
        sp.compare_exchange_strong(none, off, std::memory_order_acq_rel)) {
      return;
    }
  }
  seg_->deallocate(seg_->at(off));
}

// Frees every spare block; returns whether there was any.
bool QueueCore::drop_spares() const noexcept {
  bool any = false;
  for (auto& sp : st_->spare) {
    if (std::uint64_t off = sp.exchange(0, std::memory_order_acq_rel)) {
      if (valid_block(off, 0)) seg_->deallocate(seg_->at(off));
      any = true;
    }
  }
  return any;
}

// A claim in our way belongs to `state`'s owner (the slot serves `pos`'s lap or the one
// before). If that process is gone, finish its work for it: a producer's message is skipped
// (it was never put: lost, never torn), a consumer's message was taken (lost with it), and
// the slot is freed. Returns whether the slot changed.
//
// A skip is counted exactly once, whoever dies where: the slot goes through two states of
// its lap that no live claim uses, lap + 2 "skipped, not yet counted" and lap + 3 "counted",
// and the count is raised by one compare-and-swap of `skipped` that also records the slot
// as pending; the pending mark is cleared only once the slot says "counted". A repairer that
// meets lap + 2 with the slot pending knows the count was raised (its predecessor died
// between the two stores). Tail is moved past the position before the count is raised, so
// puts (tail - skips) never counts a skip of a position tail has not counted.
bool QueueCore::repair(QueueSlot& sl, std::uint64_t st, std::uint64_t pos) const {
  if (owner_of(st) == 0 || !owner_gone(owner_of(st))) return false;
  const std::uint64_t seq = seq_of(st);
  const std::uint64_t n = st_->slot_count;
  const std::uint64_t phase = seq % n;  // lap bases are multiples of n
  const std::uint64_t lap = seq - phase;
  const std::uint64_t index = pos & (n - 1);
  const std::uint64_t me = self_owner();
  if (phase == 1 || phase > 3) {  // a consumer's claim (or no state a live claim has)
    crash_step();
    if (!sl.state.compare_exchange_strong(st, make_state(seq, me), std::memory_order_acq_rel)) return true;
    crash_point(QueueCrashPoint::repair_taken);
    release(sl, lap + n);
    return true;
  }
  // A producer's claim, or a skip a dead repairer left: taken over, keeping its phase.
  const std::uint64_t taken = phase == 0 ? lap + 2 : seq;
  crash_step();
  if (!sl.state.compare_exchange_strong(st, make_state(taken, me), std::memory_order_acq_rel)) return true;
  crash_point(QueueCrashPoint::repair_taken);
  if (taken == lap + 2) {
    const std::uint64_t base = pos - index;
    const std::uint64_t position = base + static_cast<std::uint64_t>(seq_diff(lap, base)) + index;
    if (std::uint64_t t = st_->tail.load(std::memory_order_acquire); t == position) {
      crash_step();
      st_->tail.compare_exchange_strong(t, position + 1, std::memory_order_acq_rel);
    }
    count_skip(index);
    crash_step();
    sl.state.store(make_state(lap + 3, me), std::memory_order_release);  // counted
  }
  clear_pending(index);
  release(sl, lap + n);
  return true;
}

// Raises the skip count for slot `index` unless the pending mark says it was raised already.
void QueueCore::count_skip(std::uint64_t index) const {
  std::uint64_t w = st_->skipped.load(std::memory_order_acquire);
  for (;;) {
    const std::uint64_t pending = w & kPendingMask;
    if (pending == index + 1) return;  // counted by a repairer of this slot that died
    if (pending != 0) {
      // Another slot's counted skip whose repairer has not yet marked the slot: mark it for
      // it (the slot is in that skip's lap until its pending mark is cleared), then clear.
      QueueSlot& other = slots_[(pending - 1) & (st_->slot_count - 1)];
      std::uint64_t os = other.state.load(std::memory_order_acquire);
      if (seq_of(os) % st_->slot_count == 2 && owner_of(os) != 0) {
        crash_step();
        other.state.compare_exchange_strong(os, make_state(seq_of(os) + 1, owner_of(os)),
                                            std::memory_order_acq_rel);
      }
      crash_step();
      st_->skipped.compare_exchange_strong(w, w & ~kPendingMask, std::memory_order_acq_rel);
      w = st_->skipped.load(std::memory_order_acquire);
      continue;
    }
    crash_step();
    if (st_->skipped.compare_exchange_weak(w, (skip_count(w) + 1) << kPendingBits | (index + 1),
                                           std::memory_order_acq_rel)) {
      return;
    }
  }
}

// Clears the pending mark if it is slot `index`'s (whose state says "counted" by now).
void QueueCore::clear_pending(std::uint64_t index) const {
  std::uint64_t w = st_->skipped.load(std::memory_order_acquire);
  if ((w & kPendingMask) == index + 1) {
    crash_step();
    st_->skipped.compare_exchange_strong(w, w & ~kPendingMask, std::memory_order_acq_rel);
  }
}

std::uint64_t QueueCore::skipped() const noexcept {
  return skip_count(st_->skipped.load(std::memory_order_acquire));
}

void QueueCore::put(ByteView payload, std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  const std::uint64_t n = s.slot_count;
  const bool large = payload.size() > QueueSlot::kInlineBytes;
  // A growing segment makes room up to its maximum: only a message past that can never fit.
  if (large && payload.size() > seg_->max_size()) {
    throw SegmentFull("a message of " + std::to_string(payload.size()) +
                      " bytes can never fit in a queue whose segment may hold at most " +
                      std::to_string(seg_->max_size()) +
                      " bytes; make the queue with a larger capacity");
  }
  // A large payload's block is allocated before a slot is claimed (a producer must never
  // wait for memory while holding a claim that consumers wait on), and handed to the slot
  // right after the claim; killed in between, it leaks.
  QueueBlock* block = nullptr;
  struct BlockGuard {
    const QueueCore& q;
    QueueBlock*& block;
    ~BlockGuard() {
      if (block) q.recycle_block(q.seg_->offset_of(block));
    }
  } guard{*this, block};
  // What the last failed attempt waited on: head, the slot in its way, the heap's room.
  // The spin re-attempts only when one of them changed.
  std::uint64_t seen_head = 0;
  const std::atomic<std::uint64_t>* seen_slot = nullptr;
  std::uint64_t seen_state = 0;
  bool seen_heap_full = false;
  std::size_t seen_free = 0;
  int heap_retries = 0;

  auto attempt = [&](bool repairing) -> bool {
    seen_slot = nullptr;
    seen_heap_full = false;
    for (;;) {
      std::uint64_t pos = s.tail.load(std::memory_order_acquire);
      if (s.maxsize != 0) {
        std::uint64_t h = s.head.load(std::memory_order_acquire);
        if (pos >= h && pos - h >= s.maxsize) {
          seen_head = h;
          return false;
        }
      }
      QueueSlot& sl = slot(pos);
      std::uint64_t st = sl.state.load(std::memory_order_acquire);
      const std::uint64_t base = pos - (pos & (n - 1));
      const std::int64_t d = seq_diff(seq_of(st), base);
      if (d < 0) {
        // The slot still holds (or is being read from, or written with) the message of the
        // previous lap: the ring is full.
        if (repairing && repair(sl, st, pos)) continue;
        seen_head = s.head.load(std::memory_order_acquire);
        seen_slot = &sl.state;
        seen_state = st;
        return false;
      }
      if (d > 0 || owner_of(st) != 0) {
        // A skip a dead repairer left half counted: finished now (else join would wait).
        if (skip_in_progress(st, n) && repair(sl, st, pos)) continue;
        // Claimed for `pos` already: help move tail past it (its producer may be slow or dead).
        // Never more than a ring ahead of head (read after tail, so a valid queue always
        // passes): a corrupt ring would otherwise lead tail on forever.
        const std::uint64_t h = s.head.load(std::memory_order_acquire);
        if (pos > h && pos - h > n) {
          throw_corrupt(*seg_, st_, "queue",
                        "its tail " + std::to_string(pos) + " is more than a ring ahead of its head " +
                            std::to_string(h));
        }
        crash_step();
        s.tail.compare_exchange_strong(pos, pos + 1, std::memory_order_acq_rel);
        continue;
      }
      if (large && !block) {
        block = take_block(payload.size());
        if (!block) {
          // Space comes back as consumers take heap messages: wait for them while any is
          // queued. With none queued, only a consumer still freeing the last one's block
          // (after releasing its slot) can help: give it a moment, then the message never fits.
          seen_head = s.head.load(std::memory_order_acquire);
          seen_heap_full = true;
          seen_free = seg_->free_bytes();
          if (s.tail.load(std::memory_order_acquire) != seen_head) return false;
          if (++heap_retries > 1000) {
            throw SegmentFull("a message of " + std::to_string(payload.size()) +
                              " bytes does not fit in the queue's segment (" +
                              std::to_string(seg_->free_bytes()) +
                              " bytes free, none of them queued messages'); make the queue with "
                              "a larger capacity");
          }
          sched_yield();
        }
        continue;
      }
      crash_step();
      if (!sl.state.compare_exchange_strong(st, make_state(base, self_owner()),
                                            std::memory_order_acq_rel)) {
        continue;
      }
      crash_point(QueueCrashPoint::put_claimed);
      crash_step();
      s.tail.compare_exchange_strong(pos, pos + 1, std::memory_order_acq_rel);
      crash_step();
      sl.size = payload.size();
      if (large) {
        // From here the slot owns the block: whoever frees the slot frees it.
        crash_step();
        sl.block.store(seg_->offset_of(block), std::memory_order_relaxed);
        QueueBlock* b = std::exchange(block, nullptr);
        crash_point(QueueCrashPoint::put_filling);
        crash_step();
        std::memcpy(b + 1, payload.data(), payload.size());
      } else {
        crash_point(QueueCrashPoint::put_filling);
        crash_step();
        if (!payload.empty()) std::memcpy(sl.payload, payload.data(), payload.size());
      }
      crash_step();
      sl.state.store(make_state(base + 1, 0), std::memory_order_release);  // publishes
      if ((pos & 63u) == 0) s.header.count.store(qsize(), std::memory_order_relaxed);
      return true;
    }
  };
  auto changed = [&] {
    return s.head.load(std::memory_order_relaxed) != seen_head ||
           (seen_slot && seen_slot->load(std::memory_order_relaxed) != seen_state) ||
           (seen_heap_full && seg_->free_bytes() != seen_free);
  };
  if (!block_until(attempt, changed, s.not_full, deadline, spin_ns_)) {
    throw Full(s.maxsize != 0 ? "the queue is full (maxsize " + std::to_string(s.maxsize) + ")"
                              : "the queue is full (its ring holds " + std::to_string(n) +
                                    " messages)");
  }
  notify(s.not_empty);
}


void QueueCore::get(Consume consume, void* ctx, std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  const std::uint64_t n = s.slot_count;
  // What the last failed attempt waited on: tail, and the slot at head (a producer claims
  // it, moves tail, and only then publishes: watching tail alone would miss the publish).
  std::uint64_t seen_tail = 0;
  const std::atomic<std::uint64_t>* seen_slot = nullptr;
  std::uint64_t seen_state = 0;
  std::exception_ptr failed;

  auto attempt = [&](bool repairing) -> bool {
    for (;;) {
      std::uint64_t pos = s.head.load(std::memory_order_acquire);
      QueueSlot& sl = slot(pos);
      std::uint64_t st = sl.state.load(std::memory_order_acquire);
      const std::uint64_t base = pos - (pos & (n - 1));
      const std::int64_t d = seq_diff(seq_of(st), base + 1);
      if (d < 0) {
        // Nothing published at `pos` yet: empty, or its producer is still writing (or died
        // writing), or a consumer of the previous lap still reads the slot.
        if (repairing && repair(sl, st, pos)) continue;
        seen_tail = s.tail.load(std::memory_order_acquire);
        seen_slot = &sl.state;
        seen_state = st;
        return false;
      }
      if (d > 0 || owner_of(st) != 0) {
        if (skip_in_progress(st, n) && repair(sl, st, pos)) continue;
        // Taken already: help move head past it. Never past tail + 1 (the most a dead
        // producer's skipped claim leaves; tail is read after head, so a valid queue always
        // passes): a corrupt ring would otherwise lead head on forever.
        const std::uint64_t t = s.tail.load(std::memory_order_acquire);
        if (pos > t + 1) {
          throw_corrupt(*seg_, st_, "queue",
                        "its head " + std::to_string(pos) + " is past its tail " + std::to_string(t));
        }
        crash_step();
        s.head.compare_exchange_strong(pos, pos + 1, std::memory_order_acq_rel);
        continue;
      }
      crash_step();
      if (!sl.state.compare_exchange_strong(st, make_state(base + 1, self_owner()),
                                            std::memory_order_acq_rel)) {
        continue;
      }
      crash_point(QueueCrashPoint::get_claimed);
      crash_step();
      s.head.compare_exchange_strong(pos, pos + 1, std::memory_order_acq_rel);
      const std::uint64_t block = sl.block.load(std::memory_order_relaxed);
      const std::uint64_t size = sl.size;
      ByteView bytes;
      if (block == 0 && size <= QueueSlot::kInlineBytes) {
        bytes = ByteView(sl.payload, size);
      } else if (block != 0 && valid_block(block, size)) {
        bytes = ByteView(reinterpret_cast<const std::byte*>(seg_->at<QueueBlock>(block) + 1), size);
      } else {
        release(sl, base + n);
        throw_corrupt(*seg_, st_, "queue", "a slot holds an invalid message (block " +
                                               std::to_string(block) + ", size " + std::to_string(size) + ")");
      }
      // The message is ours (claimed): a consumer killed from here on takes it to its grave.
      try {
        consume(ctx, bytes);
      } catch (...) {
        failed = std::current_exception();  // undecodable: dropped, as Python drops it
      }
      crash_point(QueueCrashPoint::get_consumed);
      release(sl, base + n);
      return true;
    }
  };
  auto changed = [&] {
    return s.tail.load(std::memory_order_relaxed) != seen_tail ||
           (seen_slot && seen_slot->load(std::memory_order_relaxed) != seen_state);
  };
  if (!block_until(attempt, changed, s.not_empty, deadline, spin_ns_)) {
    throw Empty("the queue is empty");
  }
  if (failed) std::rethrow_exception(failed);
}

std::size_t QueueCore::qsize() const noexcept {
  std::uint64_t h = st_->head.load(std::memory_order_acquire);
  // A consumer claims its item before it moves head (and anyone who sees the claim moves it
  // for it), so at most the item at head is taken and still counted: do not count it (the
  // Pool relies on this to tell the tasks a dead worker took from those still queued).
  const std::uint64_t st = slot(h).state.load(std::memory_order_acquire);
  const std::uint64_t base = h - (h & (st_->slot_count - 1));
  if (seq_of(st) == ((base + 1) & kSeqMask) && owner_of(st) != 0) ++h;
  std::uint64_t t = st_->tail.load(std::memory_order_acquire);
  return t > h ? static_cast<std::size_t>(t - h) : 0;
}

bool QueueCore::full() const noexcept {
  std::size_t q = qsize();
  return (st_->maxsize != 0 && q >= st_->maxsize) || q >= st_->slot_count;
}

// What JoinableQueue counts as put: positions claimed by producers, less those whose
// producer died before publishing.
static std::uint64_t puts_of(const QueueState& s) {
  return s.tail.load(std::memory_order_acquire) - skip_count(s.skipped.load(std::memory_order_acquire));
}

void QueueCore::task_done() {
  QueueState& s = *st_;
  std::uint64_t done = s.tasks_done.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t puts = puts_of(s);
    if (done >= puts) {
      throw ValueError("task_done() called more times than there were items put in the queue");
    }
    crash_step();
    if (s.tasks_done.compare_exchange_weak(done, done + 1, std::memory_order_acq_rel)) {
      if (done + 1 == puts) notify(s.all_done);
      return;
    }
  }
}

void QueueCore::join(std::optional<Clock::time_point> deadline) {
  QueueState& s = *st_;
  auto finished = [&](bool = false) { return s.tasks_done.load(std::memory_order_acquire) >= puts_of(s); };
  if (!block_until(finished, finished, s.all_done, deadline, spin_ns_)) {
    throw TimeoutError("join(): tasks are still unfinished");
  }
}

std::string walk_queue(const QueueState& s, const std::byte* ring, std::uint64_t segment_size,
                       const std::function<bool(const QueueRecord&)>& visit,
                       std::uint32_t* messages) {
  const std::uint64_t n = s.slot_count;
  if (!std::has_single_bit(n) || n < 2 || n * sizeof(QueueSlot) != s.ring_bytes) {
    return "the slot count " + std::to_string(n) + " does not match a ring of " +
           std::to_string(s.ring_bytes) + " bytes";
  }
  if (reinterpret_cast<std::uintptr_t>(ring) % alignof(QueueSlot) != 0) {
    return "the ring is not aligned to " + std::to_string(alignof(QueueSlot)) +
           " bytes (a corrupt ring offset)";
  }
  const auto* slots = reinterpret_cast<const QueueSlot*>(ring);
  const std::uint64_t h = s.head.load(), t = s.tail.load();
  // head may be one past tail: a producer killed between claiming position t and moving tail
  // on, whose claim a consumer repaired (skipped) and stepped over. Valid: the next put
  // moves tail past the repaired slot (it sees the slot's sequence ahead and helps). The
  // slot loop below then checks that slot t was taken over or released, never published.
  if ((t < h && h - t > 1) || (t >= h && t - h > n)) {
    return "head " + std::to_string(h) + " and tail " + std::to_string(t) +
           " do not fit a ring of " + std::to_string(n) + " slots";
  }
  for (const auto& sp : s.spare) {
    const std::uint64_t off = sp.load(std::memory_order_relaxed);
    if (off != 0 && (off < 16 || off > segment_size - sizeof(QueueBlock))) {
      return "a spare block lies outside the segment (offset " + std::to_string(off) + ")";
    }
  }
  bool visiting = true;
  // Every slot, by the position it serves: [h, t) hold messages (or claims), the rest are
  // free for [t, h + n), possibly still being read for the lap before.
  for (std::uint64_t pos = h; pos != h + n; ++pos) {
    const QueueSlot& sl = slots[pos & (n - 1)];
    const std::uint64_t st = sl.state.load(std::memory_order_relaxed);
    const std::uint64_t base = pos - (pos & (n - 1));
    const std::uint64_t seq = seq_of(st);
    const pid_t pid = pid_of(st);
    const std::uint64_t block = sl.block.load(std::memory_order_relaxed);
    auto at = [&] { return " (slot " + std::to_string(pos & (n - 1)) + ", position " + std::to_string(pos) + ")"; };
    if (pos < t) {
      if (seq == (base & kSeqMask) && owner_of(st) != 0) continue;  // being written
      // Being skipped (its writer died; a repairer counts it, see repair()).
      if ((seq == ((base + 2) & kSeqMask) || seq == ((base + 3) & kSeqMask)) && owner_of(st) != 0) continue;
      // Skipped (its writer died; repaired by a producer a lap ahead), maybe claimed again.
      if (seq == ((base + n) & kSeqMask)) continue;
      if (seq != ((base + 1) & kSeqMask)) return "a queued slot has sequence " + std::to_string(seq) + at();
      if (owner_of(st) != 0) continue;  // being read (head not yet moved)
      QueueRecord rec;
      if (block == 0) {
        if (sl.size > QueueSlot::kInlineBytes) return "an inline message is too long" + at();
        rec.inline_bytes = ByteView(sl.payload, sl.size);
      } else {
        if (block < 16 || block > segment_size - sizeof(QueueBlock) ||
            sl.size > segment_size - block - sizeof(QueueBlock)) {
          return "a message's heap block lies outside the segment" + at();
        }
        rec.in_heap = true;
        rec.heap_offset = block + sizeof(QueueBlock);
        rec.heap_size = sl.size;
      }
      if (visiting && visit) visiting = visit(rec);
    } else {
      const bool free_now = st == make_state(base, 0);
      // At tail: a producer's claim (tail not yet moved), or that claim taken over by a
      // repairer (a reading claim) that was itself killed before releasing the slot.
      const std::uint64_t phase = (seq - (base & kSeqMask)) & kSeqMask;
      const bool claimed_now = phase <= 3 && owner_of(st) != 0 && pos == t;
      // The lap before: still being read, or a skip still being counted (head one past tail).
      const std::uint64_t before = (seq - ((base - n) & kSeqMask)) & kSeqMask;
      const bool read_before = (before == 1 || before == 2 || before == 3) && owner_of(st) != 0;
      if (!free_now && !claimed_now && !read_before) {
        return "a free slot has sequence " + std::to_string(seq) + " and pid " + std::to_string(pid) + at();
      }
      if (free_now && block != 0) return "a free slot still owns a heap block" + at();
    }
  }
  if (messages) *messages = static_cast<std::uint32_t>(t > h ? t - h : 0);
  return {};
}

std::string QueueCore::check() const {
  std::uint32_t msgs = 0;
  std::string problem = walk_queue(*st_, reinterpret_cast<const std::byte*>(slots_), seg_->size(),
                                   {}, &msgs);
  if (problem.empty()) st_->header.count.store(msgs, std::memory_order_relaxed);
  return problem;
}

}  // namespace mpp::detail
