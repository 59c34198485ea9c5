// Handles of a Manager's objects as messages and task arguments (rule 5 of
// mpp/serialization.hpp), as Python pickles its proxies:
//
//   auto d = manager.dict<std::string, int>("counts");
//   pool.apply_async(count_words, d, "a.txt");   // the worker gets a Dict on the same object
//   q.put(d);  conn.send(lock);                  // so do a Queue's and a Pipe's readers
//
// A Dict, List, Queue, Value or Lock made by a Manager is sent as a reference: the
// segment's name, the object's name in the segment's directory, and its kind and types.
// The receiver reopens it by name: from the segment this process already maps (a forked
// child inherits its parent's), else by attaching to the segment, as Manager::attach does.
// The object's kind and types are checked on arrival (TypeMismatch names both), so a
// reference cannot be misread as another object.
//
// Objects made without a Manager (a standalone Queue, Value or Lock) live in anonymous
// memory, which only processes forked after it was made share: sending one is a ValueError
// that says so (Python: "Queue objects should only be shared between processes through
// inheritance"). Pass them to the Process instead, or make them with a Manager.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <tuple>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/segment.hpp"
#include "mpp/detail/segment_format.hpp"
#include "mpp/manager.hpp"

namespace mpp::detail {

// What travels for one handle.
struct HandleRef {
  std::string segment;  // the segment's name in /dev/shm, or "anonymous:<pid>:<ns>" for the
                        // memfd of an anonymous Manager (its creator and creation time)
  std::string object;   // the object's name in its directory
  std::uint32_t kind = 0;
  std::string key_type, value_type;  // type fingerprints, for a clear message on mismatch
};

// Records the segment of an anonymous Manager, so that its objects' handles can travel to
// the processes that share it: this one and those forked after it (which inherit this
// record with the mapping). Called by Manager's anonymous constructors.
void remember_anonymous_manager(const std::shared_ptr<Segment>& segment);

// The reference to the object whose state is at `state` in `seg`. Throws ValueError when
// the segment is anonymous and not a Manager's (a standalone object's), or the object has no
// directory entry.
HandleRef make_handle_ref(const Segment& seg, const void* state, ObjectKind kind,
                          const char* what);

// A Manager over the segment named in `ref`: this process's mapping of it when it has one,
// else a new attachment. Throws as Manager::attach, and ValueError for an anonymous
// Manager's segment that this process does not share (it was not forked after it was made).
Manager reopen_segment(const HandleRef& ref, ObjectKind expected);

void save_handle_ref(std::string& out, const HandleRef& ref);
HandleRef load_handle_ref(ByteView bytes);

template <class K, class V>
struct HandleCodec<Dict<K, V>> {
  static void save(std::string& out, const Dict<K, V>& d) {
    save_handle_ref(out, make_handle_ref(Access::core(d).segment(), &Access::core(d).state(), ObjectKind::dict, "Dict"));
  }
  static Dict<K, V> load(ByteView b) {
    HandleRef r = load_handle_ref(b);
    return reopen_segment(r, ObjectKind::dict).template dict<K, V>(r.object);
  }
};

template <class T>
struct HandleCodec<List<T>> {
  static void save(std::string& out, const List<T>& l) {
    save_handle_ref(out, make_handle_ref(Access::core(l).segment(), &Access::core(l).state(), ObjectKind::list, "List"));
  }
  static List<T> load(ByteView b) {
    HandleRef r = load_handle_ref(b);
    return reopen_segment(r, ObjectKind::list).template list<T>(r.object);
  }
};

template <class T>
struct HandleCodec<Queue<T>> {
  static void save(std::string& out, const Queue<T>& q) {
    save_handle_ref(out, make_handle_ref(Access::core(q).segment(), &Access::core(q).state(),
                                         ObjectKind::queue, "Queue"));
  }
  static Queue<T> load(ByteView b) {
    HandleRef r = load_handle_ref(b);
    return reopen_segment(r, ObjectKind::queue).template queue<T>(r.object);
  }
};

template <class T>
struct HandleCodec<Value<T>> {
  static void save(std::string& out, const Value<T>& v) {
    save_handle_ref(out, make_handle_ref(*Access::segment(v.get_lock()), Access::state(v),
                                         ObjectKind::value, "Value"));
  }
  static Value<T> load(ByteView b) {
    HandleRef r = load_handle_ref(b);
    return reopen_segment(r, ObjectKind::value).template value<T>(r.object);
  }
};

template <>
struct HandleCodec<Lock> {
  static void save(std::string& out, const Lock& l) {
    save_handle_ref(
        out, make_handle_ref(*Access::segment(l), Access::header(l), ObjectKind::lock, "Lock"));
  }
  static Lock load(ByteView b) {
    HandleRef r = load_handle_ref(b);
    return reopen_segment(r, ObjectKind::lock).lock(r.object);
  }
};

}  // namespace mpp::detail
