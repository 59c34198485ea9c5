// mpp::List<T> — Python's manager.list(), living in a shared-memory segment.
//
//   auto l = manager.list<int>("pids");
//   l.append(getpid());  l.extend({1, 2});  int last = l.get(-1);  l.insert(0, 7);
//
// Elements go through the one codec (detail/codec.hpp). Indexes are Python's: negative
// ones count from the end; an index out of range is an IndexError.
//
// Concurrency: readers share, writers are exclusive; every method is one atomic step.
// get, [], size, empty, index, count and contains write nothing to shared memory: they read
// a version-validated snapshot and take the shared lock only when writers keep changing the
// list under them; read(), for_each and to_vector hold the shared lock.
// A handle is a cheap value (it holds the segment), valid in forked children.
//
// After a crash: a process killed at any instruction while it holds the lock blocks nobody;
// the next user recovers the lock, finishes or drops the one change that was in progress
// and the list is valid: each element the dead process was adding is fully there or not at
// all. A process killed inside get, size, index, count or contains leaves nothing behind;
// one killed holding read() or inside for_each or to_vector leaves a reader slot that the
// next writer finds dead and clears. SegmentFull from any method leaves the list exactly as it was, and usable.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpp/detail/access.hpp"
#include "mpp/detail/codec.hpp"
#include "mpp/detail/list_core.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/errors.hpp"
#include "mpp/repr.hpp"  // repr(l) and operator<<

namespace mpp {

// Python's manager.list(), in a shared-memory segment (see the top of this file). A cheap,
// copyable handle; made by Manager::list.
template <class T>
class List {
  static_assert(alignof(T) <= 16, "mpp stores values 16-byte aligned");

 public:
  // The element type.
  using value_type = T;

  // Opens the list `name` in `seg`, making it empty if it does not exist. Throws
  // TypeMismatch, SegmentFull, ValueError (see Manager::list).
  static List open(std::shared_ptr<detail::Segment> seg, std::string_view name) {
    detail::Segment::ObjectSpec spec{name, detail::ObjectKind::list, "", detail::type_fingerprint<T>(),
                                     sizeof(detail::ListState), alignof(detail::ListState)};
    auto [mem, created] = seg->find_or_create(spec, [&](void* p) {
      detail::ListCore::construct(p, static_cast<std::uint32_t>(detail::encoding_of<T>));
    });
    (void)created;
    return List(std::move(seg), static_cast<detail::ListState*>(mem));
  }

  // Adds v at the end. Throws SegmentFull (list unchanged).
  void append(const T& v) {
    auto e = detail::encode(v);
    auto g = core_.write();
    core_.append_locked(e.bytes());
  }

  // Adds every element of `values` at the end, all or none.
  template <class Range>
  void extend(const Range& values) {
    std::vector<detail::Encoded> keep;
    for (const auto& v : values) keep.push_back(detail::encode(static_cast<const T&>(v)));
    std::vector<std::span<const std::byte>> raw;
    raw.reserve(keep.size());
    for (auto& e : keep) raw.push_back(e.bytes());
    auto g = core_.write();
    core_.extend_locked(raw);
  }
  void extend(std::initializer_list<T> values) { extend<std::initializer_list<T>>(values); }

  // The element at index i (negative: from the end). Throws IndexError. Like size, index,
  // count and contains, it reads without writing shared memory (a version-validated
  // snapshot) unless writers keep interfering; then it takes the shared lock.
  T get(long long i) const {
    long long n = 0;
    bool in_range = false;
    auto read = [&](auto&& copy) {
      core_.read_snapshot([&](const detail::ListCore::Snapshot& s) {
        n = static_cast<long long>(s.size());
        const long long j = i < 0 ? i + n : i;
        if (!(in_range = j >= 0 && j < n)) return true;
        detail::ByteView b;
        if (!s.item(static_cast<std::uint64_t>(j), b)) return false;
        copy(b);
        return true;
      });
      if (!in_range) throw out_of_range(i, n, "index");
    };
    if constexpr (detail::encoding_of<T> == detail::Encoding::trivial) {
      // A fixed-size copy (a few moves, no memcpy call); an element of another size is
      // decoded again under the lock, where the codec says what is wrong with it.
      T v;
      bool fits = false;
      read([&](detail::ByteView b) {
        if ((fits = b.size() == sizeof(T))) std::memcpy(static_cast<void*>(&v), b.data(), sizeof(T));
      });
      if (fits) return v;
      auto g = core_.read();
      return detail::decode<T>(core_.item_locked(resolve(i))->bytes());
    } else {
      detail::CopiedBytes copy;
      read([&](detail::ByteView b) { copy.assign(b); });
      if constexpr (detail::encoding_of<T> == detail::Encoding::string) {
        return copy.take_string();
      } else {
        return detail::decode<T>(copy.bytes());
      }
    }
  }
  T operator[](long long i) const { return get(i); }

  // Replaces the element at index i. Throws IndexError, SegmentFull (list unchanged).
  void set(long long i, const T& v) {
    auto e = detail::encode(v);
    auto g = core_.write();
    std::uint64_t j = 0, n = 0;
    detail::ListItem* x = core_.item_at(i, j, n);
    if (!x) throw out_of_range(i, static_cast<long long>(n), "index");
    core_.set_locked(j, x, e.bytes());
  }

  // Python's l.insert(i, v): before index i; i past either end clamps, as in Python.
  void insert(long long i, const T& v) {
    auto e = detail::encode(v);
    auto g = core_.write();
    const auto n = static_cast<long long>(core_.size_locked());
    if (i < 0) i = std::max(0LL, i + n);
    if (i > n) i = n;
    core_.insert_locked(static_cast<std::uint64_t>(i), e.bytes());
  }

  // Python's l.pop(i=-1): removes and returns. Throws IndexError (empty list or bad index).
  T pop(long long i = -1) {
    auto g = core_.write();
    auto idx = resolve(i, "pop");
    T v = detail::decode<T>(core_.item_locked(idx)->bytes());
    core_.remove_at_locked(idx);
    return v;
  }

  // Python's l.remove(v): removes the first element equal to v. Throws ValueError if none.
  void remove(const T& v) {
    auto e = detail::encode(v);
    auto g = core_.write();
    auto i = find(e.bytes(), 0);
    if (!i) throw ValueError("List.remove(x): x not in list");
    core_.remove_at_locked(*i);
  }

  // Python's l.index(v, start=0): position of the first element equal to v. Throws ValueError.
  std::size_t index(const T& v, std::size_t start = 0) const {
    auto e = detail::encode(v);
    std::optional<std::uint64_t> at;
    core_.read_snapshot([&](const detail::ListCore::Snapshot& s) {
      at.reset();
      detail::ByteView b;
      for (std::uint64_t i = start; i < s.size(); ++i) {
        if (!s.item(i, b)) return false;
        if (equal(b, e.bytes())) {
          at = i;
          break;
        }
      }
      return true;
    });
    if (!at) throw ValueError("List.index(x): x not in list");
    return static_cast<std::size_t>(*at);
  }

  // Python's l.count(v).
  std::size_t count(const T& v) const {
    auto e = detail::encode(v);
    std::size_t c = 0;
    core_.read_snapshot([&](const detail::ListCore::Snapshot& s) {
      c = 0;
      detail::ByteView b;
      for (std::uint64_t i = 0; i < s.size(); ++i) {
        if (!s.item(i, b)) return false;
        c += equal(b, e.bytes());
      }
      return true;
    });
    return c;
  }

  // Python's `v in l`.
  bool contains(const T& v) const {
    auto e = detail::encode(v);
    bool found = false;
    core_.read_snapshot([&](const detail::ListCore::Snapshot& s) {
      found = false;
      detail::ByteView b;
      for (std::uint64_t i = 0; i < s.size() && !found; ++i) {
        if (!s.item(i, b)) return false;
        found = equal(b, e.bytes());
      }
      return true;
    });
    return found;
  }

  // The number of elements (Python: len(l)); empty() when it is 0.
  std::size_t size() const {
    std::uint64_t n = 0;
    core_.read_snapshot([&](const detail::ListCore::Snapshot& s) {
      n = s.size();
      return true;
    });
    return static_cast<std::size_t>(n);
  }
  bool empty() const { return size() == 0; }
  // Removes every element (Python: l.clear()).
  void clear() {
    auto g = core_.write();
    core_.clear_locked();
  }

  // A consistent copy of every element (Python: list(l) / l[:]).
  std::vector<T> to_vector() const {
    auto g = core_.read();
    const auto n = core_.size_locked();
    std::vector<T> out;
    out.reserve(n);
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(detail::decode<T>(core_.item_locked(i)->bytes()));
    return out;
  }

  // Calls fn(view) for every element under one shared lock, with zero-copy views.
  template <class F>
  void for_each(F&& fn) const {
    auto g = core_.read();
    const auto n = core_.size_locked();
    for (std::uint64_t i = 0; i < n; ++i) fn(detail::view<T>(core_.item_locked(i)->bytes()));
  }

  // A shared lock; views it hands out are valid while it lives. It holds its own handle,
  // so it stays valid even if the List it came from is gone.
  class ReadGuard {
   public:
    // The number of elements, which cannot change while the guard lives.
    std::size_t size() const { return static_cast<std::size_t>(l_.core_.size_locked()); }
    // Element i (negative counts from the end) in place, without a copy: a const T& or a
    // std::string_view, valid while the guard lives. IndexError out of range.
    View<T> view(long long i) const {
      return detail::view<T>(l_.core_.item_locked(l_.resolve(i))->bytes());
    }

   private:
    friend class List;
    explicit ReadGuard(const List& l) : l_(l), g_(l_.core_.read()) {}
    List l_;  // declared first: outlives the lock
    detail::SharedGuard g_;
  };
  // Takes the shared lock for a series of zero-copy reads.
  ReadGuard read() const { return ReadGuard(*this); }

  // Walks the structure (exclusive lock) and returns what is wrong, empty when sound.
  std::string check() const { return core_.check(); }
  std::uint64_t leaked_bytes() const { return core_.state().hdr.leaked.load(); }
  std::uint64_t recoveries() const { return core_.state().hdr.mutex.recoveries(); }

 private:
  friend struct detail::Access;  // the handle codec sends a List as a reference
  const detail::ListCore& core() const noexcept { return core_; }
  List(std::shared_ptr<detail::Segment> seg, detail::ListState* st) : core_(std::move(seg), st) {}

  // Lock held.
  std::uint64_t resolve(long long i, const char* what = "index") const {
    const auto n = static_cast<long long>(core_.size_locked());
    const long long j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) throw out_of_range(i, n, what);
    return static_cast<std::uint64_t>(j);
  }
  static IndexError out_of_range(long long i, long long n, const char* what) {
    return IndexError(std::string("list ") + what + " out of range: " + std::to_string(i) +
                      " in a list of " + std::to_string(n));
  }
  static bool equal(std::span<const std::byte> a, std::span<const std::byte> b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
  }
  std::optional<std::uint64_t> find(std::span<const std::byte> e, std::size_t start) const {
    const auto n = core_.size_locked();
    for (std::uint64_t i = start; i < n; ++i) {
      if (equal(core_.item_locked(i)->bytes(), e)) return i;
    }
    return std::nullopt;
  }

  detail::ListCore core_;
};

}  // namespace mpp
