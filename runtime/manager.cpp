#include "mpp/manager.hpp"

#include "mpp/detail/sync_state.hpp"
#include "mpp/handle_codec.hpp"
#include "mpp/sync.hpp"

namespace mpp {

Manager::Manager(const std::string& name, std::size_t bytes, Options options)
    : seg_(detail::Segment::create(name, bytes,
                                   {.mode = options.mode,
                                    .persist = options.persist,
                                    .directory_entries = options.directory_entries,
                                    .max_bytes = options.max_bytes})) {}

Manager::Manager(std::size_t bytes, Options options)
    : seg_(detail::Segment::anonymous(bytes, options.directory_entries,
                                      options.max_bytes ? options.max_bytes
                                                        : detail::Segment::auto_max_bytes(bytes, true))) {
  detail::remember_anonymous_manager(seg_);
}

Manager Manager::attach(const std::string& name) {
  return Manager(detail::Segment::attach(name));
}

// ---- the synchronisation primitives (sync.hpp) ----------------------------------------

Lock Manager::lock(std::string_view name) {
  using S = detail::LockState;
  return detail::Access::make<Lock>(
      sync_object<S>(name, detail::ObjectKind::lock, {}, sizeof(S),
                     [](void* p) { ::new (p) S(detail::RobustMutex::Kind::normal); }),
      seg_);
}

RLock Manager::rlock(std::string_view name) {
  using S = detail::LockState;
  return detail::Access::make<RLock>(
      sync_object<S>(name, detail::ObjectKind::rlock, {}, sizeof(S),
                     [](void* p) { ::new (p) S(detail::RobustMutex::Kind::recursive); }),
      seg_);
}

Semaphore Manager::semaphore(int value, std::string_view name) {
  using S = detail::SemaphoreState;
  auto v = detail::checked_semaphore_value(value);
  return detail::Access::make<Semaphore>(
      sync_object<S>(name, detail::ObjectKind::semaphore, {}, sizeof(S),
                     [v](void* p) { ::new (p) S(v, S::kUnbounded); }),
      seg_);
}

BoundedSemaphore Manager::bounded_semaphore(int value, std::string_view name) {
  using S = detail::SemaphoreState;
  auto v = detail::checked_semaphore_value(value);
  return detail::Access::make<BoundedSemaphore>(
      sync_object<S>(name, detail::ObjectKind::bounded_semaphore, {}, sizeof(S),
                     [v](void* p) { ::new (p) S(v, v); }),
      seg_);
}

Event Manager::event(std::string_view name) {
  using S = detail::EventState;
  return detail::Access::make<Event>(sync_object<S>(name, detail::ObjectKind::event, {}, sizeof(S),
                                                    [](void* p) { ::new (p) S(); }),
                                     seg_);
}

Condition Manager::condition(std::string_view name) {
  using S = detail::ConditionState;
  return detail::Access::make<Condition>(sync_object<S>(name, detail::ObjectKind::condition, {},
                                                        sizeof(S), [](void* p) { ::new (p) S(); }),
                                         seg_);
}

Condition Manager::condition(const Lock& lock, std::string_view name) {
  return condition_bound_to(lock, detail::ObjectKind::lock, name);
}

Condition Manager::condition(const RLock& lock, std::string_view name) {
  return condition_bound_to(lock, detail::ObjectKind::rlock, name);
}

Condition Manager::condition_bound_to(const LockHandle& lock, detail::ObjectKind kind,
                                      std::string_view name) {
  using S = detail::ConditionState;
  // The Condition records its lock by offset, so the lock must live in this segment (a
  // handle from another Manager on the same named segment is fine: same offsets).
  const auto& theirs = detail::Access::segment(lock);
  bool same = theirs == seg_ || (theirs && !seg_->name().empty() && theirs->name() == seg_->name());
  if (!same) {
    throw ValueError("Manager::condition(lock): the lock must be made by this Manager ("
                     "m.lock() or m.rlock()), so that every process finds it in the segment");
  }
  const std::uint64_t offset = theirs->offset_of(detail::Access::header(lock));
  auto* state = sync_object<S>(name, detail::ObjectKind::condition, {}, sizeof(S), [&](void* p) {
    auto* s = ::new (p) S();
    s->lock_kind = kind;
    s->lock_offset = offset;
  });
  if (state->lock_offset != offset) {
    throw ValueError("Condition '" + std::string(name) + "' exists, bound to another lock");
  }
  return detail::Access::make<Condition>(state, seg_);
}

Barrier Manager::barrier(unsigned parties, std::string_view name, Barrier::Action action,
                         Barrier::Timeout timeout) {
  using S = detail::BarrierState;
  auto n = detail::checked_parties(parties);
  return detail::Access::make<Barrier>(sync_object<S>(name, detail::ObjectKind::barrier, {},
                                                      sizeof(S), [n](void* p) { ::new (p) S(n); }),
                                       seg_, std::move(action), timeout);
}

}  // namespace mpp
