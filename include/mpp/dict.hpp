// mpp::Dict<K, V> — Python's manager.dict(), living in a shared-memory segment.
//
//   auto d = manager.dict<std::string, int>("counts");
//   d.set("a", 1);  d["b"] = 2;  int a = d["a"];
//   d.modify("a", [](int& v) { v += 1; });     // atomic read-modify-write of one key
//   { auto r = d.read(); std::string_view s = r.view(k); }  // zero copy while r lives
//
// Keys and values go through the one codec (detail/codec.hpp), under the rules of
// mpp/serialization.hpp: trivially copyable types inline, std::string as characters,
// standard containers and vocabulary types of sendable elements (std::vector, std::map,
// std::optional, std::tuple, ...) in mpp's own compact encoding, a Manager object's handle
// as a reference, and a type of yours with a Boost.Serialization serialize() as an archive
// (include <mpp/archive.hpp> where such a type is stored or read). Keys are equal when
// their encodings are equal (mind padding bytes in trivially copyable keys; do not use
// std::unordered_map or std::unordered_set keys, whose equal values may encode
// differently).
// Iteration order is insertion order, as in Python.
//
// Concurrency: a write locks the stripe its key's hash picks (one of 32; writers of
// different stripes run at once), update and clear lock every stripe; get, at and contains
// read a version-validated snapshot without writing shared memory (falling back to the
// shared lock when writers keep interfering); read(), for_each, keys, values and items share
// the dict under the shared lock (no writer in any stripe). Every method is one atomic step. A handle is a cheap value (it holds the segment),
// valid in forked children; other processes get their own through
// Manager::attach(...).dict<K,V>(name). For std::string keys every method takes a
// std::string_view (no copy of the key).
//
// After a crash: a process killed at any instruction while it holds a lock (reading or
// writing) blocks nobody; the next user of that lock recovers it, rebuilds that stripe's
// part of the index from the list of entries and settles the change that was in progress. Each method is all or
// nothing across the kill: set, erase, pop, setdefault and modify change one pair with one
// store; update commits with one store once every node is built (killed before it, nothing
// is applied; after it, the recovery applies the rest); clear commits with one store and the
// recovery frees what the dead writer had not. At most the block the dead process was
// unlinking is leaked (counted in ObjectHeader::leaked). SegmentFull from any method leaves
// the dict exactly as it was, and usable. A corrupt dict (a segment damaged outside mpp)
// gives SegmentError naming it, and check() says what is wrong; never a signal or a hang.
#pragma once

#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/detail/access.hpp"
#include "mpp/detail/codec.hpp"
#include "mpp/detail/dict_core.hpp"
#include "mpp/detail/item_ref.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"
#include "mpp/repr.hpp"  // repr(d) and operator<<

namespace mpp {

// Python's manager.dict(), in a shared-memory segment (see the top of this file). A cheap,
// copyable handle; made by Manager::dict.
template <class K, class V>
class Dict {
  static_assert(alignof(V) <= 16 && alignof(K) <= 16, "mpp stores values 16-byte aligned");

 public:
  // The key and value types, as std::map names them.
  using key_type = K;
  using mapped_type = V;
  // What the methods take as a key: std::string_view for std::string keys (so a word cut
  // out of a larger text is looked up without a copy; std::string and const char* convert
  // to it), const K& otherwise.
  using key_arg = std::conditional_t<std::is_same_v<K, std::string>, std::string_view, const K&>;

  // Opens the dict `name` in `seg`, making it empty if it does not exist. Throws
  // TypeMismatch, SegmentFull, ValueError (see Manager::dict).
  static Dict open(std::shared_ptr<detail::Segment> seg, std::string_view name) {
    detail::Segment::ObjectSpec spec{name, detail::ObjectKind::dict, detail::type_fingerprint<K>(),
                                     detail::type_fingerprint<V>(), sizeof(detail::DictState),
                                     alignof(detail::DictState)};
    auto [mem, created] = seg->find_or_create(spec, [&](void* p) {
      detail::DictCore::construct(*seg, p, static_cast<std::uint32_t>(detail::encoding_of<K>),
                                  static_cast<std::uint32_t>(detail::encoding_of<V>));
    });
    (void)created;
    return Dict(std::move(seg), static_cast<detail::DictState*>(mem));
  }

  // d[k] = v. Throws SegmentFull (d unchanged).
  void set(key_arg key, const V& value) {
    auto k = encode_key(key);
    auto v = encode_value(value);
    const auto h = detail::hash_bytes(k.bytes());
    bool inserted;
    {
      Locked g(core_, h);
      inserted = core_.template set_locked<kOneStore>(k.bytes(), h, v.bytes());
    }
    if (inserted) core_.grow_if_needed();
  }

  // The value of `key`. Throws KeyError if absent. Like get and contains, it reads without
  // writing shared memory (a version-validated snapshot) unless writers keep interfering.
  V at(key_arg key) const {
    auto v = get(key);
    if (!v) throw KeyError(missing(key));
    return std::move(*v);
  }

  // Python's d.get(k): the value, or nullopt.
  std::optional<V> get(key_arg key) const {
    auto k = encode_key(key);
    bool found = false;
    if constexpr (detail::encoding_of<V> == detail::Encoding::trivial) {
      V v;
      std::uint32_t len = 0;
      core_.lookup(k.bytes(), detail::hash_bytes(k.bytes()), [&](detail::DictNode* n) {
        found = n != nullptr;
        if (!found) return;
        const detail::Bytes b = core_.value_of(n);
        if ((len = static_cast<std::uint32_t>(b.size())) == sizeof(V)) std::memcpy(&v, b.data(), sizeof(V));
      });
      if (!found) return std::nullopt;
      if (len != sizeof(V)) detail::throw_wrong_size<V>(len);
      return v;
    } else {
      std::string bytes;
      core_.lookup(k.bytes(), detail::hash_bytes(k.bytes()), [&](detail::DictNode* n) {
        found = n != nullptr;
        if (found) bytes.assign(detail::as_chars(core_.value_of(n)));
      });
      if (!found) return std::nullopt;
      if constexpr (detail::encoding_of<V> == detail::Encoding::string) {
        return std::optional<V>(std::move(bytes));
      } else {
        return detail::decode<V>(detail::as_bytes(bytes));
      }
    }
  }

  // Python's d.get(k, default).
  V get(key_arg key, const V& default_value) const {
    auto v = get(key);
    return v ? std::move(*v) : default_value;
  }

  // Python's `k in d`. Reads like get: a version-validated snapshot, no write to shared
  // memory unless writers keep interfering.
  bool contains(key_arg key) const {
    auto k = encode_key(key);
    bool found = false;
    core_.lookup(k.bytes(), detail::hash_bytes(k.bytes()), [&](detail::DictNode* n) { found = n != nullptr; });
    return found;
  }

  // Removes `key`; returns whether it was there (Python's `del d[k]` raises instead: use pop).
  bool erase(key_arg key) {
    auto k = encode_key(key);
    const auto h = detail::hash_bytes(k.bytes());
    Locked g(core_, h);
    auto* n = core_.find_locked(k.bytes(), h);
    if (!n) return false;
    core_.erase_locked(n);
    return true;
  }

  // Python's d.pop(k): removes and returns the value. Throws KeyError if absent.
  V pop(key_arg key) {
    auto k = encode_key(key);
    const auto h = detail::hash_bytes(k.bytes());
    Locked g(core_, h);
    auto* n = core_.find_locked(k.bytes(), h);
    if (!n) throw KeyError(missing(key));
    V v = detail::decode<V>(core_.template value_locked<kOneStore>(n));
    core_.erase_locked(n);
    return v;
  }

  // Python's d.pop(k, default).
  V pop(key_arg key, const V& default_value) {
    auto k = encode_key(key);
    const auto h = detail::hash_bytes(k.bytes());
    Locked g(core_, h);
    auto* n = core_.find_locked(k.bytes(), h);
    if (!n) return default_value;
    V v = detail::decode<V>(core_.template value_locked<kOneStore>(n));
    core_.erase_locked(n);
    return v;
  }

  // Python's d.setdefault(k, default): the value of k, inserting `default_value` first if
  // absent. One atomic step.
  V setdefault(key_arg key, const V& default_value) {
    auto k = encode_key(key);
    auto h = detail::hash_bytes(k.bytes());
    {
      Locked g(core_, h);
      if (auto* n = core_.find_locked(k.bytes(), h)) return detail::decode<V>(core_.template value_locked<kOneStore>(n));
      auto v = encode_value(default_value);
      core_.template set_locked<kOneStore>(k.bytes(), h, v.bytes());
    }
    core_.grow_if_needed();
    return default_value;
  }

  // The atomic read-modify-write Python's Manager lacks: fn(V&) runs under the dict's
  // exclusive lock on the current value (or `initial` if absent) and the result is stored.
  // Returns the new value. If fn throws, nothing changes. fn must not use this dict.
  template <class F>
  V modify(key_arg key, F&& fn, const V& initial = V{}) {
    auto k = encode_key(key);
    auto h = detail::hash_bytes(k.bytes());
    std::optional<V> out;
    {
      Locked g(core_, h);
      auto* n = core_.find_locked(k.bytes(), h);
      V& v = out.emplace(n ? detail::decode<V>(core_.template value_locked<kOneStore>(n)) : initial);
      std::invoke(std::forward<F>(fn), v);
      auto e = encode_value(v);
      if (n) {
        core_.template assign_locked<kOneStore>(n, e.bytes());
        return std::move(v);
      }
      core_.template set_locked<kOneStore>(k.bytes(), h, e.bytes());
    }
    core_.grow_if_needed();
    return std::move(*out);
  }

  // Python's d.update(other): all pairs or none, also when the caller is killed midway
  // (SegmentFull leaves d unchanged).
  template <class Pairs>
  void update(const Pairs& pairs) {
    std::vector<detail::Encoded> keep;
    std::vector<std::pair<detail::Bytes, detail::Bytes>> raw;
    for (const auto& [key, value] : pairs) {
      keep.push_back(detail::encode(static_cast<const K&>(key)));
      keep.push_back(detail::encode(static_cast<const V&>(value)));
    }
    for (std::size_t i = 0; i < keep.size(); i += 2) raw.emplace_back(keep[i].bytes(), keep[i + 1].bytes());
    detail::DictCore::AllGuard g(core_);
    core_.set_many_locked(raw);
  }
  void update(std::initializer_list<std::pair<K, V>> pairs) {
    update<std::initializer_list<std::pair<K, V>>>(pairs);
  }
  void update(const Dict& other) { update(other.items()); }

  // Python's d[k], both ways: `d[k] = v` sets, `V x = d[k]` reads (KeyError if absent).
  // For std::string keys the reference borrows the key (a string_view): use it within the
  // expression, as its comment says.
  using Ref = detail::ItemRef<Dict, std::remove_cvref_t<key_arg>, V>;
  Ref operator[](key_arg key) { return Ref(*this, key); }
  V operator[](key_arg key) const { return at(key); }

  // len(d), and whether it is 0: the count at one moment, which other processes may change
  // right after.
  std::size_t size() const { return static_cast<std::size_t>(core_.size()); }
  bool empty() const { return size() == 0; }
  // Empties the dict: all or nothing, also when the caller is killed midway.
  void clear() {
    detail::DictCore::AllGuard g(core_);
    core_.clear_locked();
  }

  // Consistent snapshots (taken under one shared lock), in insertion order.
  std::vector<K> keys() const {
    std::vector<K> out;
    auto g = core_.read();
    out.reserve(reserve_hint());
    core_.for_each_locked([&](detail::DictNode& n) {
      out.push_back(detail::decode<K>(n.key()));
      return true;
    });
    return out;
  }
  std::vector<V> values() const {
    std::vector<V> out;
    auto g = core_.read();
    out.reserve(reserve_hint());
    core_.for_each_locked([&](detail::DictNode& n) {
      out.push_back(detail::decode<V>(n.value()));
      return true;
    });
    return out;
  }
  std::vector<std::pair<K, V>> items() const {
    std::vector<std::pair<K, V>> out;
    auto g = core_.read();
    out.reserve(reserve_hint());
    core_.for_each_locked([&](detail::DictNode& n) {
      out.emplace_back(detail::decode<K>(n.key()), detail::decode<V>(n.value()));
      return true;
    });
    return out;
  }

  // Calls fn(key, value) for every pair under one shared lock, with zero-copy views
  // (mpp::View: const T& for trivially copyable types, std::string_view for strings).
  // fn must not change this dict (ValueError). Return false from fn to stop early (or
  // return void to visit all).
  template <class F>
  void for_each(F&& fn) const {
    auto g = core_.read();
    core_.for_each_locked([&](detail::DictNode& n) {
      if constexpr (std::is_same_v<std::invoke_result_t<F&, View<K>, View<V>>, bool>) {
        return fn(detail::view<K>(n.key()), detail::view<V>(n.value()));
      } else {
        fn(detail::view<K>(n.key()), detail::view<V>(n.value()));
        return true;
      }
    });
  }

  // A shared lock on the dict; views it hands out are valid while it lives. It holds its
  // own handle, so it stays valid even if the Dict it came from is gone.
  class ReadGuard {
   public:
    // Whether `key` is in the dict, as it stands under this guard's lock.
    bool contains(key_arg key) const { return find(key) != nullptr; }
    // The value of `key`, borrowed from shared memory. Throws KeyError if absent.
    View<V> view(key_arg key) const {
      auto* n = find(key);
      if (!n) throw KeyError(missing(key));
      return detail::view<V>(d_.core_.template value_locked<kOneStore>(n));
    }
    std::size_t size() const { return d_.size(); }

   private:
    friend class Dict;
    explicit ReadGuard(const Dict& d) : d_(d), g_(d_.core_.read()) {}
    detail::DictNode* find(key_arg key) const {
      auto k = encode_key(key);
      return d_.core_.find_locked(k.bytes(), detail::hash_bytes(k.bytes()));
    }
    Dict d_;  // declared first: outlives the lock
    detail::DictCore::SharedGuard g_;
  };
  // Takes the dict's shared lock and returns it as a ReadGuard: writers wait while it lives,
  // and views it hands out stay valid until it goes. A reader killed while holding it does
  // not block the writers for ever (the lock is the segment's crash-safe shared lock).
  ReadGuard read() const { return ReadGuard(*this); }

  // Walks the whole structure (taking the exclusive lock) and returns what is wrong with it,
  // empty when it is sound. For tests and mpp-inspect-like checks.
  std::string check() const { return core_.check(); }
  // Bytes given up by crash recoveries.
  std::uint64_t leaked_bytes() const { return core_.state().hdr.leaked.load(); }
  // How many times a dead holder's lock was recovered.
  std::uint64_t recoveries() const { return core_.recoveries(); }

 private:
  // The count, as far as the segment could hold nodes: a damaged count must not size an
  // allocation.
  std::size_t reserve_hint() const {
    return static_cast<std::size_t>(
        std::min<std::uint64_t>(core_.size(), core_.segment().size() / sizeof(detail::DictNode)));
  }

  friend struct detail::Access;  // the handle codec sends a Dict as a reference
  const detail::DictCore& core() const noexcept { return core_; }
  Dict(std::shared_ptr<detail::Segment> seg, detail::DictState* st) : core_(std::move(seg), st) {}
  using Locked = detail::DictCore::StripeGuard;  // the exclusive lock of a key's stripe
  // The encoding of a key or a value: its own bytes (no copy, nothing to destroy) for
  // strings and trivially copyable types, an archive for the others. `.bytes()` either way.
  struct Borrowed {
    detail::Bytes b;
    detail::Bytes bytes() const noexcept { return b; }
  };
  template <class T, class Arg>
  static auto encode_borrowed(const Arg& x) {
    if constexpr (detail::encoding_of<T> == detail::Encoding::string) {
      return Borrowed{detail::as_bytes(std::string_view(x))};
    } else if constexpr (detail::encoding_of<T> == detail::Encoding::trivial) {
      return Borrowed{std::as_bytes(std::span<const T, 1>(&x, 1))};
    } else {
      return detail::encode(x);
    }
  }
  static auto encode_key(key_arg key) { return encode_borrowed<K>(key); }
  // Whether every value is encoded in 1, 2, 4 or 8 bytes, replaced by one aligned store.
  static constexpr bool kOneStore = detail::encoding_of<V> == detail::Encoding::trivial &&
                                    detail::one_store_size(sizeof(V));
  static auto encode_value(const V& value) { return encode_borrowed<V>(value); }
  static std::string missing(key_arg key) {
    if constexpr (std::is_arithmetic_v<K>) {
      return "key " + std::to_string(key) + " is not in the dict";
    } else if constexpr (std::is_convertible_v<const K&, std::string_view>) {
      return "key '" + std::string(std::string_view(key)) + "' is not in the dict";
    } else {
      return "key is not in the dict";
    }
  }

  detail::DictCore core_;
};

}  // namespace mpp
