// The one way the library's own code and its tests reach a public handle's internals.
//
// Public handles (Value, Array, the sync primitives, Queue, Manager, Barrier) keep their
// shared state, segment and detail-taking constructors private and declare
// `friend struct detail::Access;`. Manager, the handle codec, runtime/ and the tests go
// through these static functions (as must any new internal user: mpp-inspect, a servable);
// users have no reason to, and detail types may change between versions.
//
// The functions are templates over the handle type, so this header needs none of the
// public headers (sync.hpp and value.hpp include it) and each class exposes only what it
// has: a call a class does not support fails to compile.
#pragma once

#include <utility>

namespace mpp::detail {

struct Access {
  // A handle built by one of its private constructors (from detail state and a segment,
  // a QueueCore, and the like).
  template <class Handle, class... Args>
  static Handle make(Args&&... args) {
    return Handle(std::forward<Args>(args)...);
  }

  // The handle's shared state (Value, Array, Semaphore, Event, Condition).
  template <class Handle>
  static auto state(const Handle& h) noexcept {
    return h.state();
  }

  // The segment the handle keeps mapped (LockHandle, Manager).
  template <class Handle>
  static decltype(auto) segment(const Handle& h) noexcept {
    return h.segment();
  }

  // The object header holding a lock's mutex (LockHandle).
  template <class Handle>
  static auto header(const Handle& h) noexcept {
    return h.header();
  }

  // A queue's engine (Queue, JoinableQueue).
  template <class Handle>
  static decltype(auto) core(const Handle& h) noexcept {
    return h.core();
  }
};

}  // namespace mpp::detail
