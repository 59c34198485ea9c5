// The type-erased body of mpp::Dict: a hash map of byte strings in a segment, written so
// that a process killed at any instruction leaves it valid (DESIGN.md, "Locks that survive
// their holder"). mpp::Dict<K,V> (dict.hpp) puts the codec on top.
//
// Truth and derived state:
//   - the truth is ONE singly linked list of nodes in insertion order (DictState::head,
//     DictNode::next). A node is built completely, then linked by one store (the tail's
//     `next`, or `head`); an erase unlinks with one store, then frees; replacing a value
//     links a complete new node in the old one's place with one store.
//   - derived, rebuilt from the list when a dead writer's lock is recovered: `prev`, `tail`,
//     the bucket index (BucketArray + DictNode::bnext), the element count and byte count.
//   - the intent record (intent.hpp) settles blocks a dead writer allocated or was freeing.
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
#include <utility>

#include "mpp/detail/intent.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"
#include "mpp/detail/shared_lock.hpp"

namespace mpp::detail {

using Bytes = std::span<const std::byte>;

// A stable 64-bit hash of a key's encoded bytes: the same in every process and program.
inline std::uint64_t hash_bytes(Bytes b) noexcept {
  auto mix = [](std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
  };
  std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ b.size();
  std::size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    h = mix(h ^ w) + 0x9e3779b97f4a7c15ULL;
  }
  if (i < b.size()) {
    std::uint64_t w = 0;
    std::memcpy(&w, b.data() + i, b.size() - i);
    h = mix(h ^ w);
  }
  return mix(h);
}

inline constexpr std::uint32_t DICT_NODE_TAG = 0xD1C7D1C7u;

// One key/value pair. Key bytes at offset sizeof(DictNode), value bytes at the next
// 16-byte boundary after the key (so a trivially copyable value can be borrowed as const T&).
struct DictNode {
  std::atomic<std::uint64_t> next{0};  // truth: the next node in insertion order (0: last)
  std::uint64_t prev = 0;              // derived: the previous node
  std::uint64_t bnext = 0;             // derived: the next node in the same bucket
  std::uint64_t hash = 0;              // hash_bytes(key)
  std::uint32_t key_len = 0;
  std::uint32_t value_len = 0;
  std::uint32_t tag = DICT_NODE_TAG;
  std::uint32_t reserved = 0;

  static constexpr std::size_t value_offset(std::size_t key_len) {
    return sizeof(DictNode) + (key_len + 15) / 16 * 16;
  }
  static constexpr std::size_t bytes_for(std::size_t key_len, std::size_t value_len) {
    return value_offset(key_len) + value_len;
  }
  std::byte* key_data() { return reinterpret_cast<std::byte*>(this) + sizeof(DictNode); }
  std::byte* value_data() { return reinterpret_cast<std::byte*>(this) + value_offset(key_len); }
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

// The object's state (directory entry object_offset points here).
struct DictState {
  ObjectHeader hdr;                    // lock, count, bytes, leaked
  ReaderSlots readers;                 // shared lock
  std::atomic<std::uint64_t> head{0};  // truth: first node in insertion order
  std::uint64_t tail = 0;              // derived: last node
  std::atomic<std::uint64_t> buckets{0};  // offset of the BucketArray (always valid)
  Intent intent;
  std::uint32_t key_encoding = 0;      // detail::Encoding of K and V, for inspect
  std::uint32_t value_encoding = 0;
};

// Operations on one DictState. Methods named *_locked need the caller to hold the lock
// of the kind said; the others lock themselves.
class DictCore {
 public:
  DictCore(std::shared_ptr<Segment> seg, DictState* st) : seg_(std::move(seg)), st_(st) {}

  // Builds an empty dict in `mem` (inside `seg`), with its first bucket array.
  static void construct(Segment& seg, void* mem, std::uint32_t key_enc, std::uint32_t value_enc);

  SharedGuard read() const;
  ExclusiveGuard write() const;

  // Lookups, under either lock. nullptr if absent.
  DictNode* find_locked(Bytes key, std::uint64_t hash) const noexcept;

  // Sets key to value (insert or replace), exclusive lock held. Throws SegmentFull with the
  // dict unchanged.
  void set_locked(Bytes key, std::uint64_t hash, Bytes value);
  // Replaces the value of a node found under this exclusive hold.
  void assign_locked(DictNode* node, Bytes value);
  // Unlinks and frees the node, exclusive lock held.
  void erase_locked(DictNode* node) noexcept;
  // Sets many pairs all or nothing: every node is allocated first (SegmentFull leaves the
  // dict unchanged), then each is published. Exclusive lock held.
  void set_many_locked(std::span<const std::pair<Bytes, Bytes>> pairs);
  void clear_locked() noexcept;

  std::uint64_t size() const noexcept { return st_->hdr.count.load(std::memory_order_relaxed); }

  // Calls fn for every node in insertion order (either lock held). Stops when fn returns false.
  void for_each_locked(const std::function<bool(DictNode&)>& fn) const;

  // Walks the whole structure and returns what is wrong with it (empty when sound).
  std::string check() const;

  Segment& segment() const noexcept { return *seg_; }
  DictState& state() const noexcept { return *st_; }

 private:
  friend struct DictRecovery;
  DictNode* node(std::uint64_t off) const noexcept { return seg_->at<DictNode>(off); }
  BucketArray& buckets() const noexcept { return *seg_->at<BucketArray>(st_->buckets.load(std::memory_order_relaxed)); }
  DictNode* build(Bytes key, std::uint64_t hash, Bytes value, bool pending);
  void publish(DictNode* n);  // links a built node (replacing one with the same key)
  void grow_index() noexcept;
  void recover();             // under the recovered lock

  std::shared_ptr<Segment> seg_;
  DictState* st_;
};

}  // namespace mpp::detail
