// mpp::Manager — Python's multiprocessing.Manager(), over one shared-memory segment.
//
//   mpp::Manager m("jobs");                // creates /dev/shm/jobs (mode 0600), grows as needed
//   mpp::Manager m("jobs", 64 << 20);      // the same, starting at 64 MiB
//   mpp::Manager m;                        // anonymous (a memfd, never in /dev/shm), for
//                                          // sharing with forked children
//   auto m2 = mpp::Manager::attach("jobs"); // from any process on the machine
//   auto d = m.dict<std::string, int>("counts");
//   auto l = m.list<double>("samples");
//
// A segment grows on demand, up to Options::max_bytes, while every process keeps using it:
// growing never moves it, so no object handle or view is invalidated.
//
// A Manager and every object handle it gives out are cheap values holding a shared_ptr to
// the segment: copy them freely, use them in forked children. Unless persist() was called,
// the segment is removed once the process that created it has released its last handle or
// ended in any way (even killed), and no process maps it any more: an attacher or a forked
// child still using it keeps it alive. Objects are found by name: asking again for
// a name returns the same object; asking with another kind or other types throws
// TypeMismatch naming both.
//
// After a crash: a process killed while it holds any lock of the segment (an object's or
// the allocator's) blocks nobody; the next user recovers the lock and the object is valid.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "mpp/array.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/sync_state.hpp"
#include "mpp/dict.hpp"
#include "mpp/list.hpp"
#include "mpp/queue.hpp"
#include "mpp/sync.hpp"
#include "mpp/value.hpp"

namespace mpp {

// Python's multiprocessing.Manager(): one shared-memory segment and the named objects in it
// (see the top of this file). A cheap, copyable handle on the segment.
class Manager {
 public:
  // Initial size of a Manager made without one (it grows from there).
  static constexpr std::size_t default_bytes = 256 << 10;

  // How a named or anonymous segment is made (each field says what it sets).
  struct Options {
    unsigned mode = 0600;              // permissions, set whatever the umask
    bool persist = false;              // keep the segment after the creator is done with it
    unsigned directory_entries = 32;   // named objects with room made at creation; more are
                                       // added as needed (there is no cap)
    // The most the segment may grow to. 0: the size of /dev/shm (the file can never
    // outgrow it; the address range is reserved, no memory). max_bytes == bytes gives a
    // fixed segment.
    std::size_t max_bytes = 0;
  };

  // Creates the segment /dev/shm/<name> of `bytes` bytes (its initial size), reserving
  // those pages now; it grows as needed up to options.max_bytes. Throws ValueError for a
  // bad name or size (or a max below it), FileExistsError if it exists, SegmentFull if
  // /dev/shm has no room for it.
  Manager(const std::string& name, std::size_t bytes, Options options);
  Manager(const std::string& name, std::size_t bytes = default_bytes)
      : Manager(name, bytes, Options{}) {}

  // Creates an anonymous segment (a memfd: never in /dev/shm, gone with its last user),
  // shared with processes forked after it; name() is empty. It starts at `bytes` and grows
  // as needed up to options.max_bytes (0: the machine's physical memory). Only
  // options.max_bytes and directory_entries apply. Throws SegmentFull if there is no
  // memory for it, ValueError for a bad size.
  Manager(std::size_t bytes, Options options);
  Manager() : Manager(std::size_t{default_bytes}, Options{}) {}
  // An anonymous segment of exactly `bytes` bytes: fixed, as before segments grew.
  explicit Manager(std::size_t bytes) : Manager(bytes, Options{.max_bytes = bytes}) {}

  // Opens an existing segment by name, from any process. Throws FileNotFoundError if there
  // is none, SegmentError if the file is not an mpp segment of this version.
  static Manager attach(const std::string& name);

  // The segment's name (as given to the constructor or attach); empty for an anonymous one.
  const std::string& name() const noexcept { return seg_->name(); }
  // The segment's size in bytes now; it grows as objects need room.
  std::size_t size() const noexcept { return seg_->size(); }
  // The most the segment may grow to, in bytes (Options::max_bytes, or what 0 resolved to).
  std::size_t max_size() const noexcept { return seg_->max_size(); }
  // Bytes the segment's heap can still hand out, counting the room left to grow.
  std::size_t free_bytes() const { return seg_->free_bytes(); }
  // Whether this process created the segment (and will remove it).
  bool is_creator() const noexcept { return seg_->is_creator(); }
  // Keeps the segment in /dev/shm after the creator releases it (mpp-inspect rm removes it).
  void persist() noexcept { seg_->persist(); }

  // The shared dict `name` of K -> V (Python: manager.dict()), made empty if new.
  // Throws TypeMismatch if `name` is another kind of object or has other types, SegmentFull
  // if there is no room, ValueError for a bad name.
  template <class K, class V>
  Dict<K, V> dict(std::string_view name) {
    return Dict<K, V>::open(seg_, name);
  }

  // The shared list `name` of T (Python: manager.list()), made empty if new. Throws as dict().
  template <class T>
  List<T> list(std::string_view name) {
    return List<T>::open(seg_, name);
  }

  // The shared queue `name` of T (Python: manager.Queue(maxsize)), made if new with
  // `maxsize` (0: bounded only by the segment) and a ring of `ring_bytes` for small
  // messages (a power of two; 0 picks a share of the segment's free bytes, at most 1 MiB;
  // larger messages and overflow go to the segment's heap). An existing queue keeps the
  // maxsize and ring it was made with. Throws TypeMismatch if `name` is another kind of
  // object or has another T, SegmentFull, ValueError (bad name or ring size).
  template <class T>
  Queue<T> queue(std::string_view name, std::size_t maxsize = 0, std::size_t ring_bytes = 0) {
    return detail::Access::make<Queue<T>>(
        named_queue<T>(name, detail::ObjectKind::queue, maxsize, ring_bytes));
  }
  // The shared JoinableQueue `name` (Python: manager.JoinableQueue()). As queue().
  template <class T>
  JoinableQueue<T> joinable_queue(std::string_view name, std::size_t maxsize = 0,
                                  std::size_t ring_bytes = 0) {
    return detail::Access::make<JoinableQueue<T>>(
        named_queue<T>(name, detail::ObjectKind::joinable_queue, maxsize, ring_bytes));
  }
  // The shared SimpleQueue `name`. As queue(), unbounded.
  template <class T>
  SimpleQueue<T> simple_queue(std::string_view name, std::size_t ring_bytes = 0) {
    return detail::Access::make<SimpleQueue<T>>(
        named_queue<T>(name, detail::ObjectKind::simple_queue, 0, ring_bytes));
  }

  // ---- Value, Array and the synchronisation primitives (sync.hpp, value.hpp, array.hpp) ----
  // Each finds the object `name` or makes it; the primitives take an empty name to mean a
  // fresh unique one ("lock#3"), for sharing through forked children. An existing object
  // keeps what it was made with (a Value its value, a Semaphore its count, a Barrier its
  // parties). All throw TypeMismatch when `name` is another kind of object (a bounded and an
  // unbounded semaphore are different kinds) or has another T, SegmentFull when there is no
  // room, ValueError for a bad name or argument.

  // The shared Value `name` of T (Python: manager.Value(typecode, value)), holding `init` if new.
  template <class T>
  Value<T> value(std::string_view name, const T& init = T{}) {
    using State = detail::ValueState<T>;
    return detail::Access::make<Value<T>>(
        sync_object<State>(name, detail::ObjectKind::value, detail::type_fingerprint<T>(),
                           sizeof(State), [&](void* p) { ::new (p) State(init); }),
        seg_);
  }

  // The shared Array `name` of n T (Python: manager.Array(typecode, sequence)), zero-filled
  // if new. Also throws ValueError when it exists with another size.
  template <class T>
  Array<T> array(std::string_view name, std::size_t n) {
    using State = detail::ArrayState<T>;
    auto* state = sync_object<State>(name, detail::ObjectKind::array, detail::type_fingerprint<T>(),
                                     State::bytes_for(n),
                                     [&](void* p) { ::new (p) State(n, nullptr); }, State::kAlign);
    if (state->size != n) {
      throw ValueError("Array '" + std::string(name) + "' has " + std::to_string(state->size) +
                       " elements, not " + std::to_string(n));
    }
    return detail::Access::make<Array<T>>(state, seg_);
  }

  // Python: manager.Lock(), manager.RLock().
  Lock lock(std::string_view name = {});
  RLock rlock(std::string_view name = {});
  // Python: manager.Semaphore(value), manager.BoundedSemaphore(value). `value` as Semaphore's.
  Semaphore semaphore(int value = 1, std::string_view name = {});
  BoundedSemaphore bounded_semaphore(int value = 1, std::string_view name = {});
  // Python: manager.Event().
  Event event(std::string_view name = {});
  // Python: manager.Condition(): with an RLock of its own, or bound to `lock`, which must
  // belong to this Manager's segment (else ValueError) so attached processes find it too.
  Condition condition(std::string_view name = {});
  Condition condition(const Lock& lock, std::string_view name = {});
  Condition condition(const RLock& lock, std::string_view name = {});
  // Python: manager.Barrier(parties, action, timeout). The action and default timeout belong
  // to this handle (each process passes its own); `parties` > 0.
  Barrier barrier(unsigned parties, std::string_view name = {}, Barrier::Action action = {},
                  Barrier::Timeout timeout = std::nullopt);

 private:
  friend struct detail::Access;
  // Wraps a segment some other component made (an anonymous one, for example).
  explicit Manager(std::shared_ptr<detail::Segment> segment) : seg_(std::move(segment)) {}
  // The segment, for the factories of other components, mpp-inspect and tests (through
  // detail::Access): detail::Segment may change.
  const std::shared_ptr<detail::Segment>& segment() const noexcept { return seg_; }

  template <class T>
  detail::QueueCore named_queue(std::string_view name, detail::ObjectKind kind,
                                std::size_t maxsize, std::size_t ring_bytes) {
    return detail::QueueCore::named(seg_, name, kind, maxsize, ring_bytes,
                                    detail::type_fingerprint<T>());
  }

  // Finds or makes the object `name` of `kind` whose state is a State of `bytes` bytes.
  template <class State, class Construct>
  State* sync_object(std::string_view name, detail::ObjectKind kind, std::string value_type,
                     std::size_t bytes, const Construct& construct,
                     std::size_t align = alignof(State)) {
    detail::Segment::ObjectSpec spec{name, kind, {}, std::move(value_type), bytes, align};
    return static_cast<State*>(seg_->find_or_create(spec, construct).first);
  }
  Condition condition_bound_to(const LockHandle& lock, detail::ObjectKind kind,
                               std::string_view name);

  std::shared_ptr<detail::Segment> seg_;
};

}  // namespace mpp

// Handles of a Manager's objects travel as references through queues, pipes and pools.
#include "mpp/handle_codec.hpp"
