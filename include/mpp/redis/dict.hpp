// mpp::redis::Dict<K,V>: mpp::Dict's API on a Redis hash, shared by processes on several
// machines. Link mpp::redis.
//
//   auto conn = std::make_shared<mpp::redis::Connection>("redis://10.0.0.5:6379/0");
//   mpp::redis::Dict<std::string, long> counts(conn, "counts");
//   counts.set("a", 1);
//   counts.modify("a", [](long& v) { ++v; });   // atomic read-modify-write
//
// Every method is one atomic step on the server: what one call did is seen whole by every
// other client, or not at all. keys(), values() and items() are consistent snapshots.
// update() and get_many() batch many keys into one round trip. modify() runs a
// read-modify-write of one key atomically, with optimistic locking (WATCH/MULTI/EXEC,
// retried when another client changed the hash meanwhile): Python's Manager cannot do
// d[k] += 1 atomically; this can, across machines.
//
// Failures: a dropped connection throws ConnectionError (or TimeoutError) for the call in
// flight, which may or may not have been applied; the next call reconnects (see
// Connection). modify() applies its change at most once. A value whose bytes are not a V
// (another program wrote other types under this name) is a DecodeError. The hash lives as
// long as Redis keeps it: across a restart only with persistence (appendonly).
//
// Keys and values are encoded portably (detail/portable_codec.hpp), so machines of any
// architecture agree on them. One key `name` on the server, a hash. A Dict is used by one
// thread at a time.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpp/detail/item_ref.hpp"
#include "mpp/detail/portable_codec.hpp"
#include "mpp/errors.hpp"
#include "mpp/redis/connection.hpp"

namespace mpp::redis {

namespace detail {

// The part of Dict that does not depend on K and V: keys and values as bytes.
// runtime/redis/dict.cpp.
class DictCore {
 public:
  DictCore(std::shared_ptr<Connection> conn, std::string name);

  void set(std::string_view key, std::string_view value);
  std::optional<std::string> get(std::string_view key);
  bool contains(std::string_view key);
  bool erase(std::string_view key);
  std::optional<std::string> pop(std::string_view key);
  std::string setdefault(std::string_view key, std::string_view value);
  void update(std::span<const std::string_view> keys_and_values);  // k0, v0, k1, v1, ...
  std::vector<std::optional<std::string>> get_many(std::span<const std::string_view> keys);
  std::size_t size();
  void clear();
  std::vector<std::string> keys();
  std::vector<std::string> values();
  std::vector<std::string> items();  // k0, v0, k1, v1, ...
  std::string modify(std::string_view key,
                     const std::function<std::string(const std::optional<std::string>&)>& fn);
  const std::string& name() const noexcept { return name_; }
  Connection& connection() const noexcept { return *conn_; }

 private:
  std::shared_ptr<Connection> conn_;
  std::string name_;
};

template <class K>
std::string describe_key(const K& key) {
  if constexpr (std::is_same_v<K, std::string>) {
    return "'" + key + "'";
  } else if constexpr (std::is_arithmetic_v<K>) {
    return std::to_string(key);
  } else {
    return "(a " + mpp::detail::type_name<K>() + ")";
  }
}

}  // namespace detail

// mpp::Dict's API on a Redis hash; every method is one atomic step on the server (see the top
// of this file). A handle: the hash itself lives on the server.
template <class K, class V>
class Dict {
  static std::string enc(const auto& x) {
    std::string s;
    mpp::detail::portable_encode_to(x, s);
    return s;
  }

 public:
  // A handle on the hash `name` of the server behind `conn` (shared with other Queues and
  // Dicts of this thread). Makes no call to the server.
  Dict(std::shared_ptr<Connection> conn, std::string name)
      : core_(std::move(conn), std::move(name)) {}
  // The same on a connection of its own to `url` (connects now; see Connection).
  Dict(std::string_view url, std::string name)
      : core_(std::make_shared<Connection>(url), std::move(name)) {}

  // d[key] = value.
  void set(const K& key, const V& value) { core_.set(enc(key), enc(value)); }
  // The value of `key`; KeyError when absent.
  V at(const K& key) {
    auto v = get(key);
    if (!v) throw KeyError(missing(key));
    return std::move(*v);
  }
  // The value of `key`, or nullopt.
  std::optional<V> get(const K& key) {
    auto b = core_.get(enc(key));
    if (!b) return std::nullopt;
    return mpp::detail::portable_decode<V>(*b);
  }
  // The value of `key`, or `default_value` when it is absent.
  V get(const K& key, const V& default_value) {
    auto v = get(key);
    return v ? std::move(*v) : default_value;
  }

  // Python's d[k], both ways: `d[k] = v` sets, `V x = d[k]` reads (KeyError if absent).
  using Ref = mpp::detail::ItemRef<Dict, K, V>;
  Ref operator[](const K& key) { return Ref(*this, key); }

  // Whether `key` is in the dict.
  bool contains(const K& key) { return core_.contains(enc(key)); }
  // Removes `key`; whether it was there.
  bool erase(const K& key) { return core_.erase(enc(key)); }
  // Removes `key` and returns its value, atomically; KeyError when absent.
  V pop(const K& key) {
    auto b = core_.pop(enc(key));
    if (!b) throw KeyError(missing(key));
    return mpp::detail::portable_decode<V>(*b);
  }
  // pop() that returns `default_value` when `key` is absent.
  V pop(const K& key, const V& default_value) {
    auto b = core_.pop(enc(key));
    return b ? mpp::detail::portable_decode<V>(*b) : default_value;
  }
  // The value of `key`, after setting it to `default_value` if it was absent (atomically).
  V setdefault(const K& key, const V& default_value) {
    return mpp::detail::portable_decode<V>(core_.setdefault(enc(key), enc(default_value)));
  }
  // Sets every (key, value) pair of `pairs` (a map, a vector of pairs...), in one round
  // trip per 1000 pairs; each batch is applied atomically.
  template <std::ranges::input_range R>
  void update(const R& pairs) {
    std::vector<std::string> bytes;
    for (const auto& [k, v] : pairs) {
      bytes.push_back(enc(static_cast<const K&>(k)));
      bytes.push_back(enc(static_cast<const V&>(v)));
    }
    std::vector<std::string_view> views(bytes.begin(), bytes.end());
    if (!views.empty()) core_.update(views);
  }
  void update(std::initializer_list<std::pair<K, V>> pairs) {
    update<std::initializer_list<std::pair<K, V>>>(pairs);
  }
  // The values of `keys` (nullopt where absent), in one round trip.
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> get_many(const R& keys) {
    std::vector<std::string> bytes;
    for (const auto& k : keys) bytes.push_back(enc(static_cast<const K&>(k)));
    std::vector<std::string_view> views(bytes.begin(), bytes.end());
    std::vector<std::optional<V>> out;
    if (views.empty()) return out;
    for (auto& b : core_.get_many(views)) {
      out.push_back(b ? std::optional<V>(mpp::detail::portable_decode<V>(*b)) : std::nullopt);
    }
    return out;
  }

  // The number of keys, and whether it is 0 (snapshots).
  std::size_t size() { return core_.size(); }
  bool empty() { return size() == 0; }
  // Removes every key (deletes the hash).
  void clear() { core_.clear(); }
  // Consistent snapshots of the keys, the values and the pairs (one command each; a
  // DecodeError if any bytes are not a K or a V).
  std::vector<K> keys() { return decode_all<K>(core_.keys()); }
  std::vector<V> values() { return decode_all<V>(core_.values()); }
  std::vector<std::pair<K, V>> items() {
    auto b = core_.items();
    std::vector<std::pair<K, V>> out;
    out.reserve(b.size() / 2);
    for (std::size_t i = 0; i + 1 < b.size(); i += 2) {
      out.emplace_back(mpp::detail::portable_decode<K>(b[i]),
                       mpp::detail::portable_decode<V>(b[i + 1]));
    }
    return out;
  }

  // The atomic read-modify-write Python's Manager lacks, as mpp::Dict::modify: fn(V&)
  // changes the current value of `key` (or `initial` if absent) and the result is stored;
  // returns the new value. Optimistic: fn may run several times (when another client
  // changed the hash meanwhile) and must have no other effect; if it throws, nothing
  // changes.
  template <class F>
  V modify(const K& key, F&& fn, const V& initial = V{}) {
    std::string out = core_.modify(enc(key), [&](const std::optional<std::string>& old) {
      V cur = old ? mpp::detail::portable_decode<V>(*old) : initial;
      std::invoke(fn, cur);
      return enc(cur);
    });
    return mpp::detail::portable_decode<V>(out);
  }

  // The Redis key of the hash, and the connection it is reached through.
  const std::string& name() const noexcept { return core_.name(); }
  Connection& connection() const noexcept { return core_.connection(); }

 private:
  template <class T>
  static std::vector<T> decode_all(const std::vector<std::string>& b) {
    std::vector<T> out;
    out.reserve(b.size());
    for (const auto& x : b) out.push_back(mpp::detail::portable_decode<T>(x));
    return out;
  }
  std::string missing(const K& key) const {
    return "key " + detail::describe_key(key) + " is not in mpp::redis::Dict '" + core_.name() +
           "'";
  }

  detail::DictCore core_;
};

}  // namespace mpp::redis
