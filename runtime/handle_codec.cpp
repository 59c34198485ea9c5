#include "mpp/handle_codec.hpp"

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace mpp::detail {
namespace {

// The segments this process has sent handles of, by name, so that a handle received here
// (or in a forked child, which inherits this map and the mappings) reuses the mapping
// instead of attaching again.
struct SegmentCache {
  std::mutex m;
  std::map<std::string, std::weak_ptr<Segment>> by_name;
};

SegmentCache& cache() {
  static SegmentCache* c = new SegmentCache;  // never destroyed: used until _exit
  return *c;
}

constexpr std::string_view kAnonymous = "anonymous:";

// An anonymous segment has no name to attach by; its creator's pid and creation time name it
// among the segments a process inherited.
std::string anonymous_key(const SegmentHeader& h) {
  return std::string(kAnonymous) + std::to_string(h.creator_pid) + ":" +
         std::to_string(h.creation_time_ns);
}

}  // namespace

void remember_anonymous_manager(const std::shared_ptr<Segment>& segment) {
  SegmentCache& c = cache();
  std::lock_guard lock(c.m);
  std::erase_if(c.by_name, [](const auto& kv) { return kv.second.expired(); });
  c.by_name[anonymous_key(segment->header())] = segment;
}

HandleRef make_handle_ref(const Segment& seg, const void* state, ObjectKind kind, const char* what) {
  auto& h = const_cast<Segment&>(seg).header();
  std::string segment_ref = seg.name();
  if (segment_ref.empty()) {
    segment_ref = anonymous_key(h);
    SegmentCache& c = cache();
    std::lock_guard lock(c.m);
    if (!c.by_name.count(segment_ref)) {
      throw ValueError(std::string("cannot send this ") + what +
                       ": it was made without a Manager, in memory only processes forked after "
                       "it share; pass it to the Process instead, or make it with a Manager");
    }
  }
  const auto* base = reinterpret_cast<const char*>(&h);
  const auto offset = static_cast<std::uint64_t>(static_cast<const char*>(state) - base);
  const auto* dir = reinterpret_cast<const DirectoryEntry*>(base + h.directory_offset);
  for (std::uint32_t i = 0; i < h.directory_capacity; ++i) {
    const DirectoryEntry& e = dir[i];
    if (e.state.load(std::memory_order_acquire) != static_cast<std::uint32_t>(EntryState::published)) continue;
    if (e.object_offset != offset || e.kind != kind) continue;
    HandleRef r{segment_ref, std::string(e.name, ::strnlen(e.name, sizeof e.name)),
                static_cast<std::uint32_t>(kind),
                std::string(e.key_type, ::strnlen(e.key_type, sizeof e.key_type)),
                std::string(e.value_type, ::strnlen(e.value_type, sizeof e.value_type))};
    return r;
  }
  throw ValueError(std::string("cannot send this ") + what + ": segment '" + seg.name() +
                   "' has no directory entry for it");
}

Manager reopen_segment(const HandleRef& ref, ObjectKind expected) {
  if (ref.kind != static_cast<std::uint32_t>(expected)) {
    throw TypeMismatch("a handle of a " + std::string(kind_name(static_cast<ObjectKind>(ref.kind))) +
                       " ('" + ref.object + "' in segment '" + ref.segment + "') cannot be received as a " +
                       std::string(kind_name(expected)));
  }
  SegmentCache& c = cache();
  {
    std::lock_guard lock(c.m);
    auto it = c.by_name.find(ref.segment);
    if (it != c.by_name.end()) {
      if (auto seg = it->second.lock()) return Access::make<Manager>(std::move(seg));
    }
  }
  if (ref.segment.rfind(kAnonymous, 0) == 0) {
    throw ValueError("cannot receive the " + std::string(kind_name(expected)) + " '" + ref.object +
                     "': it lives in an anonymous Manager (" + ref.segment.substr(kAnonymous.size()) +
                     ": creator pid and creation time) that this process does not share; only "
                     "processes forked after that Manager was made do. Give the Manager a name "
                     "to send its objects to any process");
  }
  Manager m = Manager::attach(ref.segment);
  std::lock_guard lock(c.m);
  c.by_name[ref.segment] = Access::segment(m);
  return m;
}

void save_handle_ref(std::string& out, const HandleRef& r) {
  encode_to(out, std::tuple(r.segment, r.object, r.kind, r.key_type, r.value_type));
}

HandleRef load_handle_ref(ByteView bytes) {
  NativeReader reader(bytes);
  auto [segment, object, kind, key_type, value_type] =
      decode_from<std::tuple<std::string, std::string, std::uint32_t, std::string, std::string>>(reader);
  if (reader.left() != 0) throw DecodeError("a handle reference has bytes left over");
  return {std::move(segment), std::move(object), kind, std::move(key_type), std::move(value_type)};
}

}  // namespace mpp::detail
