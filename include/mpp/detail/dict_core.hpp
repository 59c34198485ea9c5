// The type-erased body of mpp::Dict: a hash map of byte strings in a segment, written so
// that a process killed at any instruction leaves it valid (docs/design/dict-concurrency.md).
// mpp::Dict<K,V> (dict.hpp) puts the codec on top.
//
// Truth and derived state:
//   - the truth is ONE singly linked list of nodes in insertion order (DictState::head,
//     DictNode::next). A node is built completely, then linked by one store (the tail's
//     `next`, or `head`); an erase unlinks with one store, then frees; replacing a value
//     links a complete new node in the old one's place with one store, unless the new value
//     has the old one's length: then one aligned store (1, 2, 4 or 8 bytes), or a copy into
//     the node's spare room made the value by one store (3 to 128 bytes), or (longer) a copy
//     staged in the stripe's scratch block, recorded in the intent and copied over the old
//     bytes (a recovery copies it again).
//   - derived, rebuilt from the list when a dead writer's lock is recovered: `prev`, `tail`,
//     the bucket index (BucketArray + DictNode::bnext), the element count and byte count.
//   - the intent record (intent.hpp) settles blocks a dead writer allocated or was freeing,
//     and lets the recovery finish a multi-pair change past its commit store (update, clear).
// Readers: point lookups (get, at, contains) read optimistically, validated by the shared
// lock's version word (shared_lock.hpp), and write nothing shared; views, iteration and
// check() take the shared lock. docs/design/dict-concurrency.md has the reasons.
// Layouts are documented for mpp-inspect (kind == dict).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>

#include "mpp/detail/in_place.hpp"
#include "mpp/detail/intent.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"
#include "mpp/detail/shared_lock.hpp"

namespace mpp::detail {

using Bytes = std::span<const std::byte>;

// A stable 64-bit hash of a key's encoded bytes: the same in every process and program
// (part of the segment format: nodes store it, and its low bits pick the stripe and bucket).
// The last 1..8 bytes are read with fixed-size loads (overlapping the previous word, or two
// 4-byte loads, or three single bytes) rather than a variable-length copy.
inline std::uint64_t hash_bytes(Bytes b) noexcept {
  auto mix = [](std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  };
  auto load8 = [](const std::byte* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  auto load4 = [](const std::byte* p) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return std::uint64_t{w};
  };
  const std::byte* p = b.data();
  const std::size_t n = b.size();
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 < n; i += 8) h = mix(h ^ load8(p + i)) + 0x9e3779b97f4a7c15ULL;
    h = mix(h ^ load8(p + n - 8));  // the last 8 bytes, overlapping the previous word
  } else if (n >= 4) {
    h = mix(h ^ (load4(p) | load4(p + n - 4) << 32));
  } else if (n > 0) {
    const auto byte = [&](std::size_t i) { return std::uint64_t{std::to_integer<std::uint8_t>(p[i])}; };
    h = mix(h ^ (byte(0) | byte(n / 2) << 8 | byte(n - 1) << 16));
  }
  return mix(h);
}

inline constexpr std::uint32_t DICT_NODE_TAG = 0xD1C7D1C7u;

// One key/value pair. Key bytes at offset sizeof(DictNode), value bytes at the next
// 16-byte boundary after the key (so a trivially copyable value can be borrowed as const T&).
// A value of 3 to 128 bytes that one aligned store cannot replace (spare_for) gets a second
// room of its length after the first, at the next 16-byte boundary: a replacement of the
// same length is copied into the room not in use, then one store of `rooms` makes it the
// value (assign_to_spare), so a writer killed at any point leaves the old value or the new
// one with nothing to stage and nothing to recover. Longer values are staged
// (assign_in_place): a second room would double their bytes to save a copy that is then a
// small part of the work.
struct DictNode {
  std::atomic<std::uint64_t> next{0};  // truth: the next node in insertion order (0: last)
  std::uint64_t prev = 0;              // derived: the previous node
  std::uint64_t bnext = 0;             // derived: the next node in the same bucket
  std::uint64_t hash = 0;              // hash_bytes(key)
  std::uint32_t key_len = 0;
  std::uint32_t value_len = 0;
  std::uint32_t tag = DICT_NODE_TAG;
  std::uint32_t rooms = 0;             // 0, kSpare, or kSpare | kSecond (the value is in the second)

  static constexpr std::uint32_t kSpare = 2, kSecond = 1;
  static constexpr std::size_t kSpareMax = 128;
  // Whether a node built for a value of this length gets a spare room.
  static constexpr bool spare_for(std::size_t value_len) {
    return value_len != 0 && value_len <= kSpareMax && !one_store_size(value_len);
  }
  // Whether `r` is a rooms word a writer stores for a value of this length: a node has a
  // spare room exactly when spare_for(value_len), as a value's length never changes in its
  // node. A damaged one makes the node implausible (so a write never lands past the node).
  static constexpr bool rooms_valid(std::uint32_t r, std::size_t value_len) {
    return r == 0 ? !spare_for(value_len) : (r == kSpare || r == (kSpare | kSecond)) && spare_for(value_len);
  }
  // rooms_valid, for a caller that knows its values are one_store_size (OneStore): such
  // nodes never have a spare room, so the word must be 0 (no spare_for on the hot path).
  template <bool OneStore>
  static constexpr bool rooms_valid_for(std::uint32_t r, std::size_t value_len) {
    return OneStore ? r == 0 : rooms_valid(r, value_len);
  }
  static constexpr std::size_t value_offset(std::size_t key_len) {
    return sizeof(DictNode) + (key_len + 15) / 16 * 16;
  }
  static constexpr std::size_t room_stride(std::size_t value_len) { return (value_len + 15) / 16 * 16; }
  // Where the value is, for a node with these lengths and a valid rooms word. (Arithmetic
  // rather than branches: it is on every lookup's path.)
  static constexpr std::size_t value_at(std::size_t key_len, std::size_t value_len, std::uint32_t rooms) {
    return value_offset(key_len) + (rooms & kSecond) * room_stride(value_len);
  }
  static constexpr std::size_t bytes_for(std::size_t key_len, std::size_t value_len, std::uint32_t rooms) {
    return value_offset(key_len) + (rooms / kSpare & 1) * room_stride(value_len) + value_len;
  }
  // Read once per use: a writer flips it under an optimistic reader.
  std::uint32_t rooms_now() { return std::atomic_ref<std::uint32_t>(rooms).load(std::memory_order_relaxed); }
  std::byte* key_data() { return reinterpret_cast<std::byte*>(this) + sizeof(DictNode); }
  std::byte* value_data() { return reinterpret_cast<std::byte*>(this) + value_at(key_len, value_len, rooms_now()); }
  Bytes key() { return {key_data(), key_len}; }
  Bytes value() { return {value_data(), value_len}; }
};
static_assert(sizeof(DictNode) == 48);

// The bucket index: `n` (a power of two) slots, each the offset of the first node of the
// bucket's chain (through DictNode::bnext), 0 when empty.
struct BucketArray {
  std::uint64_t n = 0;
  std::uint64_t reserved = 0;
  std::atomic<std::uint64_t> slot[1];  // really n of them
  static std::size_t bytes_for(std::uint64_t n) { return 16 + 8 * n; }
};

// The number of writer stripes of every dict (a power of two). The low bits of a key's hash
// pick its stripe; a bucket index always has at least this many slots, so every bucket
// (hash & (n - 1)) belongs to exactly one stripe (bucket % kDictStripes). Why 32: two
// writers then collide on 1 operation in 32, eight on about 1 in 5 (a machine's cores, not
// a Manager's thousands of clients, bound the writers that run at once), and the stripes
// cost 32 x 192 bytes per dict.
inline constexpr std::uint64_t kDictStripes = 32;

// One writer stripe: the lock of the keys whose hash picks it, with the version word its
// optimistic readers validate against and the intent record and scratch block of its changes.
struct alignas(64) DictStripe {
  RobustMutex mutex;
  std::atomic<std::uint32_t> seq{0};  // odd while a writer holds the stripe (a seqlock)
  std::uint32_t reserved = 0;
  Intent intent;                      // the stripe's change in flight
  // A ScratchBlock (0 until first needed): where a value replaced in place is staged first,
  // so a recovery can finish a copy a dead writer started.
  std::atomic<std::uint64_t> scratch{0};
};

// The object's state (directory entry object_offset points here).
//   hdr.mutex: the list lock, taken (inside a stripe, or after every stripe) by every change
//     of the node list: append, unlink, a node replaced by another. Its recovery rebuilds
//     what derives from the list (prev, tail, count) and settles `intent`.
//   stripes[s]: the bucket chains of the buckets b with b % kDictStripes == s, and the bytes
//     of their nodes' values; a stripe's recovery rebuilds its chains from the list.
//   readers: the shared lock of views and iteration (every stripe's `seq` even).
//   intent: the change in flight of an operation on the whole dict (update, clear, a
//     rehash), made holding every stripe and the list lock.
struct DictState {
  ObjectHeader hdr;                    // list lock, count, bytes, leaked
  ReaderSlots readers;                 // shared lock
  std::atomic<std::uint64_t> head{0};  // truth: first node in insertion order
  std::uint64_t tail = 0;              // derived: last node
  std::atomic<std::uint64_t> buckets{0};  // offset of the BucketArray (always valid)
  Intent intent;
  std::uint32_t key_encoding = 0;      // detail::Encoding of K and V, for inspect
  std::uint32_t value_encoding = 0;
  DictStripe stripes[kDictStripes];
};

// Called between any two stores of a Dict mutation when set (tests only: a crash contract
// is proven by killing the writer at each such point).
inline std::atomic<void (*)()> dict_step_hook{nullptr};
[[gnu::always_inline]] inline void dict_step() noexcept {
  if (auto h = dict_step_hook.load(std::memory_order_relaxed)) h();
}

// Whether the key bytes at `a` equal `key` (same length known). Keys of up to 16 bytes (a
// trivially copyable K, most words) are compared with two possibly overlapping word loads
// instead of a memcmp call.
inline bool same_key(const std::byte* a, Bytes key) noexcept {
  const std::byte* b = key.data();
  const std::size_t n = key.size();
  auto load8 = [](const std::byte* p) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  auto load4 = [](const std::byte* p) {
    std::uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
  };
  if (n == 8) return load8(a) == load8(b);
  if (n >= 8) {
    if (n > 16) return std::memcmp(a, b, n) == 0;
    return load8(a) == load8(b) && load8(a + n - 8) == load8(b + n - 8);
  }
  if (n >= 4) return load4(a) == load4(b) && load4(a + n - 4) == load4(b + n - 4);
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Operations on one DictState. Methods named *_locked need the caller to hold the lock
// said; the others lock themselves. Every offset read from shared memory is checked (inside
// the heap, aligned, a tagged node whose bytes fit) before it is followed, and every walk is
// bounded: a corrupt dict gives SegmentError naming it, never a signal, a hang or an
// allocation sized by a corrupt length.
// The write path of one key (StripeGuard, find_locked, set_locked/assign_locked down to the
// store or the spare-room copy, and the lock helpers of shared_lock.hpp and
// robust_mutex.hpp) is always_inline: in a large translation unit GCC's unit-growth limit
// otherwise leaves 5 to 8 calls in it (a 100-byte set in dict_bench's unit: 491 instructions
// instead of 433; docs/design/dict-writes.md). The Dict method around it is left to the
// inliner. The read path (lookup) is not forced: forced, get() grows too large to be
// inlined at its own call sites.
class DictCore {
 public:
  DictCore(std::shared_ptr<Segment> seg, DictState* st) : seg_(std::move(seg)), st_(st) {}

  // Builds an empty dict in `mem` (inside `seg`), with its first bucket array.
  static void construct(Segment& seg, void* mem, std::uint32_t key_enc, std::uint32_t value_enc);

  // The exclusive lock of the stripe of `hash`: what a change of one key needs.
  class StripeGuard {
   public:
    [[gnu::always_inline]] StripeGuard(const DictCore& c, std::uint64_t hash) : s_(&c.stripe(hash)) {
      auto rec = [&c, s = s_] { const_cast<DictCore&>(c).recover_stripe(*s); };
      lock_exclusive_inline(s_->mutex, s_->seq, c.st_->readers, RecoverRef::of(rec));
    }
    [[gnu::always_inline]] ~StripeGuard() { unlock_exclusive_inline(s_->mutex, s_->seq); }
    StripeGuard(const StripeGuard&) = delete;
    StripeGuard& operator=(const StripeGuard&) = delete;

   private:
    DictStripe* s_;
  };
  // Every stripe (in order) and then the list lock: the whole dict, for update, clear, a
  // rehash and check().
  class AllGuard {
   public:
    explicit AllGuard(const DictCore& c);
    ~AllGuard();
    AllGuard(const AllGuard&) = delete;
    AllGuard& operator=(const AllGuard&) = delete;

   private:
    void release() noexcept;
    const DictCore& c_;
    std::uint64_t held_ = 0;  // stripes locked so far
    bool list_ = false;
  };
  // The shared lock: no writer in any stripe while it lives (views, iteration).
  class SharedGuard {
   public:
    explicit SharedGuard(const DictCore& c);
    ~SharedGuard();
    SharedGuard(SharedGuard&& o) noexcept : c_(o.c_), slot_(o.slot_) { o.c_ = nullptr; }
    SharedGuard(const SharedGuard&) = delete;
    SharedGuard& operator=(const SharedGuard&) = delete;

   private:
    const DictCore* c_;
    int slot_;  // -1: every stripe's mutex is held instead (all reader slots were taken)
  };

  SharedGuard read() const { return SharedGuard(*this); }

  // Lookup under the key's stripe lock, every stripe, or the shared lock. nullptr if absent;
  // SegmentError if the chain is corrupt. Inline: the first step of every write.
  [[gnu::always_inline]] DictNode* find_locked(Bytes key, std::uint64_t hash) const {
    DictNode* n;
    if (!probe(key, hash, n)) [[unlikely]] corrupt_chain();
    return n;
  }
  // The value bytes of a node find_locked returned, the lock still held. The probe checks a
  // node's header and key, not its value: this checks the value against the heap and the
  // rooms word, with SegmentError naming the dict when either is damaged. `OneStore` as for
  // set_locked.
  template <bool OneStore = false>
  [[gnu::always_inline]] Bytes value_locked(DictNode* n) const {
    const std::uint32_t r = n->rooms, vl = n->value_len;
    const bool rooms_ok = DictNode::rooms_valid_for<OneStore>(r, vl);
    const std::size_t at = DictNode::value_at(n->key_len, vl, OneStore ? 0 : r);
    if (!rooms_ok || heap().hi - seg_->offset_of(n) < at + vl) [[unlikely]] corrupt_value();
    return {reinterpret_cast<std::byte*>(n) + at, vl};
  }
  // find_locked, not inlined: the rare locked pass of lookup(), which must stay small enough
  // to be inlined into get() itself.
  DictNode* find_out_of_line(Bytes key, std::uint64_t hash) const;

  // A lookup that writes nothing shared when it can (a reader killed in it leaves nothing
  // behind): `copy(node)` (node: key's node, or nullptr) runs on a snapshot validated by the
  // version word of the key's stripe, retried a few times, and under the shared lock if
  // writers keep interfering. `copy` may run more than once and on torn data that is then
  // thrown away: it must only copy bytes out (and not throw). A validated pass runs it
  // exactly once more on consistent data last, so what it copied last is the answer.
  template <class F>
  void lookup(Bytes key, std::uint64_t hash, F&& copy) const {
    const std::atomic<std::uint32_t>& seq = stripe(hash).seq;
    for (int t = 0; t < kOptimisticTries; ++t) {
      const std::uint32_t v = seq.load(std::memory_order_acquire);
      if ((v & 1) != 0) {
        optimistic_pause();
        continue;
      }
      DictNode* n = nullptr;
      if (!probe(key, hash, n)) continue;  // torn (or corrupt: the locked pass will say)
      copy(n);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq.load(std::memory_order_relaxed) == v) return;
    }
    auto g = read();
    copy(find_out_of_line(key, hash));
  }

  // The value bytes of a node a lookup handed to its `copy`, each length read once and
  // checked against the heap (what an optimistic reader may copy); empty when they do not fit.
  Bytes value_of(DictNode* n) const noexcept {
    const Heap h = heap();
    const std::uint64_t off = seg_->offset_of(n);
    const std::uint32_t kl = std::atomic_ref<std::uint32_t>(n->key_len).load(std::memory_order_relaxed);
    const std::uint32_t vl = std::atomic_ref<std::uint32_t>(n->value_len).load(std::memory_order_relaxed);
    // Only the bytes read are checked: a damaged rooms word picks a room that may not hold
    // the value, but never memory outside the heap.
    const std::size_t at = DictNode::value_at(kl, vl, n->rooms_now());
    if (off < h.lo || h.hi - off < at + vl) return {};
    return {reinterpret_cast<std::byte*>(n) + at, vl};
  }

  // Sets key to value (insert or replace), the key's stripe locked. Returns whether the key
  // was new (then call grow_if_needed() once the stripe is unlocked). Throws SegmentFull
  // with the dict unchanged. Inline down to the value's store, as is assign_locked: a set of
  // an existing key is otherwise mostly calls. `OneStore`: the caller's values are always 1,
  // 2, 4 or 8 bytes (a trivially copyable V of that size), so only the one-store path is
  // compiled in: the others would make Dict<K, V>::set too large to be inlined.
  template <bool OneStore = false>
  [[gnu::always_inline]] bool set_locked(Bytes key, std::uint64_t hash, Bytes value) {
    DictNode* x = find_locked(key, hash);
    if (!x) return insert_locked(key, hash, value);
    assign_locked<OneStore>(x, value);
    return false;
  }
  // Replaces the value of a node found under this hold of its stripe: a value of the old
  // one's length in place (one store when it is 1, 2, 4 or 8 bytes; else into the node's
  // spare room, or staged: assign_in_place), any other by a new node.
  // A node whose rooms word or value does not fit (damage) gets a new node: nothing is
  // written where its rooms word points.
  template <bool OneStore = false>
  [[gnu::always_inline]] void assign_locked(DictNode* x, Bytes value) {
    const std::uint32_t r = x->rooms;
    const bool rooms_ok = DictNode::rooms_valid_for<OneStore>(r, value.size());
    if (value.size() == x->value_len && rooms_ok && value_fits(x, r)) [[likely]] {
      if (store_in_one(reinterpret_cast<std::byte*>(x) + DictNode::value_at(x->key_len, value.size(), r), value)) {
        dict_step();
        return;
      }
      if constexpr (!OneStore) {
        if ((r & DictNode::kSpare) != 0) {
          assign_to_spare(x, value, r);
          return;
        }
        if (assign_in_place(stripe(x->hash), x, value)) return;
      }
    }
    replace_value(x, value);
  }
  // Unlinks and frees the node, its stripe locked.
  void erase_locked(DictNode* node);
  // Sets many pairs all or nothing, also across a crash: every node is allocated first
  // (SegmentFull leaves the dict unchanged), then one store commits the change and the
  // pairs are published; a writer killed after the commit has the rest published by the
  // recovery (rolled forward), one killed before it has everything undone. AllGuard held.
  void set_many_locked(std::span<const std::pair<Bytes, Bytes>> pairs);
  // Empties the dict all or nothing across a crash: one store (head = 0) commits, the nodes
  // are freed after (a recovery frees the ones a dead writer had not freed yet). AllGuard.
  void clear_locked();
  // Doubles the bucket index (holding every stripe) when the dict has more keys than
  // buckets. Call with no lock of this dict held.
  void grow_if_needed() {
    const BucketArray* b = buckets_if_plausible();
    if (b && size() > b->n) grow();
  }

  std::uint64_t size() const noexcept { return st_->hdr.count.load(std::memory_order_relaxed); }
  // How many dead holders' locks (list lock and stripes) were recovered, since creation.
  std::uint64_t recoveries() const noexcept;

  // Calls fn for every node in insertion order (shared lock or AllGuard held). Stops when fn
  // returns false. SegmentError when the list is corrupt (a bad link or a cycle).
  void for_each_locked(const std::function<bool(DictNode&)>& fn) const;

  // Walks the whole structure and returns what is wrong with it (empty when sound). Never
  // throws for a corrupt dict: the finding is the answer.
  std::string check() const;

  Segment& segment() const noexcept { return *seg_; }
  DictState& state() const noexcept { return *st_; }

 private:
  static constexpr int kOptimisticTries = 4;
  static void optimistic_pause() noexcept;
  DictStripe& stripe(std::uint64_t hash) const noexcept { return st_->stripes[hash & (kDictStripes - 1)]; }
  std::uint64_t stripe_index(const DictStripe& s) const noexcept {
    return static_cast<std::uint64_t>(&s - st_->stripes);
  }
  // The node at `off`, checked: SegmentError naming the dict when it cannot be one.
  DictNode* node(std::uint64_t off) const;
  // Whether node n (found by probe: its header and key are in the heap) has its value rooms
  // there too, as its value_len and a valid rooms word `r` say: what a write in place checks.
  [[gnu::always_inline]] bool value_fits(DictNode* n, std::uint32_t r) const noexcept {
    return heap().hi - seg_->offset_of(n) >= DictNode::bytes_for(n->key_len, n->value_len, r);
  }
  // A value of the node's length copied into the spare room of x (a valid rooms word `r` with
  // kSpare, value_fits checked), in two halves with a step between (so the store-by-store
  // tests also kill a half copy), then made the value by one store: killed before it, the
  // node keeps the old value; after, the new.
  [[gnu::always_inline]] void assign_to_spare(DictNode* x, Bytes value, std::uint32_t r) noexcept {
    std::byte* spare = reinterpret_cast<std::byte*>(x) + DictNode::value_at(x->key_len, value.size(), r ^ DictNode::kSecond);
    const std::size_t half = value.size() / 2;
    copy_bytes(spare, value.data(), half);
    dict_step();
    copy_bytes(spare + half, value.data() + half, value.size() - half);
    dict_step();
    std::atomic_ref<std::uint32_t>(x->rooms).store(r ^ DictNode::kSecond, std::memory_order_release);  // commits
    dict_step();
  }
  // The heap's bounds, read from the segment header (offset 0) on every use: inline, as the
  // lookups check every offset against them.
  struct Heap {
    std::uint64_t lo, hi;
  };
  Heap heap() const noexcept {
    const auto* h = seg_->at<SegmentHeader>(0);
    return {h->heap_offset, h->heap_offset + h->heap_size};
  }
  // More links than the heap could hold nodes (of at least 32 bytes): a cycle.
  std::uint64_t max_steps() const noexcept { return (heap().hi - heap().lo) / 32 + 1; }
  // The node at `off` if it can be one (in the heap, aligned, tagged, fitting), else nullptr.
  DictNode* node_if_plausible(std::uint64_t off, Heap h) const noexcept {
    if (off < h.lo || off % 16 != 0 || off > h.hi || h.hi - off < sizeof(DictNode)) return nullptr;
    auto* n = seg_->at<DictNode>(off);
    const std::uint32_t r = n->rooms_now();
    if (n->tag != DICT_NODE_TAG || !DictNode::rooms_valid(r, n->value_len) || h.hi - off < DictNode::bytes_for(n->key_len, n->value_len, r)) {
      return nullptr;
    }
    return n;
  }
  DictNode* node_if_plausible(std::uint64_t off) const noexcept { return node_if_plausible(off, heap()); }
  BucketArray& buckets() const;
  BucketArray* buckets_if_plausible(Heap h) const noexcept {
    const std::uint64_t off = st_->buckets.load(std::memory_order_acquire);
    if (off < h.lo || off % 16 != 0 || off > h.hi || h.hi - off < BucketArray::bytes_for(1)) return nullptr;
    auto* b = seg_->at<BucketArray>(off);
    const std::uint64_t n = b->n;
    if (n < kDictStripes || (n & (n - 1)) != 0 || n > (h.hi - off) / 8) return nullptr;
    return b;
  }
  BucketArray* buckets_if_plausible() const noexcept { return buckets_if_plausible(heap()); }
  // Walks key's chain without throwing: false when a link is implausible (torn or corrupt).
  // A link is followed only to a 16-aligned node header inside the heap; a node whose hash
  // differs is passed by its bnext without further checks (nothing past its header is
  // read), so the common miss costs a compare; a node whose hash matches is checked (tag,
  // key inside the heap) before its key is compared.
  // Always inline: in a lookup the out-of-line call and `out` through memory cost more than
  // the walk of a one-node chain.
  [[gnu::always_inline]] bool probe(Bytes key, std::uint64_t hash, DictNode*& out) const noexcept {
    out = nullptr;
    const Heap h = heap();
    BucketArray* b = buckets_if_plausible(h);
    if (!b || h.hi - h.lo < sizeof(DictNode)) return false;
    const std::uint64_t last = h.hi - sizeof(DictNode);  // the last offset a header fits at
    std::uint64_t off = b->slot[hash & (b->n - 1)].load(std::memory_order_acquire);
    const std::uint64_t span = last - h.lo;  // off is a plausible header iff off - lo <= span
    for (std::uint64_t steps = (h.hi - h.lo) / 32 + 1; off != 0; --steps) {
      if (off - h.lo > span || off % 16 != 0 || steps == 0) return false;
      DictNode* n = seg_->at<DictNode>(off);
      if (std::atomic_ref<std::uint64_t>(n->hash).load(std::memory_order_relaxed) == hash) {
        // key_len read once: a writer may change it under an optimistic reader, and the
        // compare must stay inside what was checked.
        const std::uint32_t kl = std::atomic_ref<std::uint32_t>(n->key_len).load(std::memory_order_relaxed);
        if (n->tag != DICT_NODE_TAG || h.hi - off - sizeof(DictNode) < kl) return false;
        if (kl == key.size() && same_key(n->key_data(), key)) {
          out = n;
          return true;
        }
      }
      off = std::atomic_ref<std::uint64_t>(n->bnext).load(std::memory_order_relaxed);
    }
    return true;
  }
  [[noreturn]] void corrupt(const std::string& what) const;
  [[noreturn, gnu::cold, gnu::noinline]] void corrupt_chain() const;
  [[noreturn, gnu::cold, gnu::noinline]] void corrupt_value() const;
  std::string name() const;  // "dict 'name'" for messages

  // The list lock (hdr.mutex), recovering a dead holder's list.
  class ListGuard {
   public:
    explicit ListGuard(const DictCore& c);
    ~ListGuard();
    ListGuard(const ListGuard&) = delete;
    ListGuard& operator=(const ListGuard&) = delete;

   private:
    const DictCore& c_;
  };
  void lock_list() const;
  void unlock_list() const noexcept;

  DictNode* build(Intent& in, Bytes key, std::uint64_t hash, Bytes value, bool pending);
  // The next three change the list: the list lock and the node's stripe are held.
  void publish(Intent& in, DictNode* n);   // links a built node (replacing one with its key)
  void append(DictNode* n);                // links a built node whose key is absent
  void replace(Intent& in, DictNode* x, DictNode* n);  // links n in x's place, frees x
  void relink_bucket(std::atomic<std::uint64_t>& slot, std::uint64_t xoff, std::uint64_t to);
  void publish_pending();                  // the publish loop of set_many (and its recovery)
  void grow();                             // takes every stripe, then grow_index()
  void grow_index() noexcept;
  // The stripe's scratch block if it can be one, else nullptr (none yet, or damaged).
  ScratchBlock* scratch_if_plausible(const DictStripe& s) const noexcept {
    return detail::scratch_if_plausible(*seg_, s.scratch.load(std::memory_order_relaxed));
  }
  std::uint64_t fixed_bytes(const BucketArray& b) const noexcept;  // index + scratch blocks
  // A value of the old one's length replaces it in the node: staged in the scratch block, the
  // intent says which node gets it, then the copy; a recovery repeats the copy from the
  // scratch block, so the node ends with the old bytes (killed before the intent) or the new.
  // The intent's op is 0 here (every change of the stripe ended its own), so the two fields
  // op_assign uses are filled in first and the op store alone commits: the recovery of
  // op_assign reads nothing else, and every other op clears the whole record when it begins.
  // False (nothing done) when there is no room for a scratch block. Out of line: inline, it
  // would keep Dict<K, V>::set of a trivially copyable V from being inlined.
  bool assign_in_place(DictStripe& s, DictNode* x, Bytes value);

  bool insert_locked(Bytes key, std::uint64_t hash, Bytes value);  // set_locked of a new key
  void replace_value(DictNode* x, Bytes value);  // assign_locked by a new node
  // The nodes of the list (cut at the first link that cannot be a node).
  std::unordered_set<std::uint64_t> live_nodes();
  // Refills the bucket chains of stripe `s` (every stripe when s == kDictStripes) from the list.
  void rebuild_buckets(std::uint64_t s);
  void recover_list();                     // under the recovered list lock
  void recover_stripe(DictStripe& s);      // under the recovered stripe lock

  std::shared_ptr<Segment> seg_;
  DictState* st_;
};

}  // namespace mpp::detail
