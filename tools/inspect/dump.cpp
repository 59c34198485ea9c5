#include "dump.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>

#include "mpp/detail/dict_core.hpp"
#include "mpp/detail/list_core.hpp"
#include "mpp/detail/queue_core.hpp"
#include "mpp/detail/segment_format.hpp"

namespace mpp::inspect {
namespace {

template <class T>
std::optional<T> load(std::span<const std::byte> b) {
  if (b.size() != sizeof(T)) return std::nullopt;
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

std::string hex(std::span<const std::byte> b, std::size_t max = 32) {
  std::string out;
  char buf[4];
  for (std::size_t i = 0; i < b.size() && i < max; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b[i]));
    out += buf;
  }
  if (b.size() > max) out += "...";
  return out;
}

std::string quoted(std::string_view s, std::size_t max = 200) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...";
  return out + "\"";
}

}  // namespace

std::string format_value(std::string_view type, std::span<const std::byte> b) {
  auto num = [&](auto v) -> std::optional<std::string> {
    if (!v) return std::nullopt;
    return std::to_string(*v);
  };
  std::optional<std::string> s;
  if (type == "std::string") {
    return quoted(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
  } else if (type == "int" || type == "int32_t") {
    s = num(load<std::int32_t>(b));
  } else if (type == "unsigned int" || type == "uint32_t") {
    s = num(load<std::uint32_t>(b));
  } else if (type == "long int" || type == "long" || type == "long long int" || type == "int64_t") {
    s = num(load<std::int64_t>(b));
  } else if (type == "long unsigned int" || type == "long long unsigned int" || type == "uint64_t" ||
             type == "unsigned long") {
    s = num(load<std::uint64_t>(b));
  } else if (type == "short int") {
    s = num(load<std::int16_t>(b));
  } else if (type == "short unsigned int") {
    s = num(load<std::uint16_t>(b));
  } else if (type == "double") {
    if (auto v = load<double>(b)) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", *v);
      s = buf;
    }
  } else if (type == "float") {
    if (auto v = load<float>(b)) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(*v));
      s = buf;
    }
  } else if (type == "bool") {
    if (auto v = load<std::uint8_t>(b)) s = *v ? "true" : "false";
  } else if (type == "char") {
    if (auto v = load<char>(b)) s = quoted(std::string_view(&*v, 1));
  }
  if (s) return *s;
  return std::string(type) + " [" + std::to_string(b.size()) + " bytes] " + hex(b);
}

namespace {

using namespace mpp::detail;

// A read-only, bounds-checked view of an image: every pointer it hands out lies wholly
// inside the heap, or it reports why not.
class Image {
 public:
  Image(const void* base, std::size_t size) : b_(static_cast<const char*>(base)), size_(size) {
    const auto& h = *reinterpret_cast<const SegmentHeader*>(b_);
    lo_ = h.heap_offset;
    hi_ = h.heap_offset + h.heap_size;
    if (hi_ > size_) hi_ = size_;
  }
  template <class T>
  const T* at(std::uint64_t off, std::uint64_t extra = 0) const {
    if (off < lo_ || off > hi_ || sizeof(T) + extra > hi_ - off || off % alignof(T) != 0) return nullptr;
    return reinterpret_cast<const T*>(b_ + off);
  }
  std::span<const std::byte> bytes(const void* p, std::size_t n) const {
    return {static_cast<const std::byte*>(p), n};
  }
  // The most nodes a heap of this size could hold: walks longer than this are cycles.
  std::uint64_t max_nodes() const { return (hi_ - lo_) / 16 + 1; }
  std::uint64_t heap_end() const { return hi_; }
  // The n bytes at `off`, if they lie wholly inside the heap.
  const std::byte* range(std::uint64_t off, std::uint64_t n) const {
    if (off < lo_ || off > hi_ || n > hi_ - off) return nullptr;
    return reinterpret_cast<const std::byte*>(b_ + off);
  }

 private:
  const char* b_;
  std::size_t size_;
  std::uint64_t lo_ = 0, hi_ = 0;
};

// Walks a dict's truth (its insertion-order list); calls row(key, value) for each node up
// to `limit`; returns problems found and the number of nodes seen.
std::uint64_t walk_dict(const Image& img, const ObjectInfo& o, std::size_t limit,
                        std::vector<std::string>& problems,
                        const std::function<void(std::span<const std::byte>, std::span<const std::byte>)>& row) {
  const auto* st = img.at<DictState>(o.offset);
  if (!st || o.state_bytes < sizeof(DictState)) {
    problems.push_back("its state is too small for a " + o.kind + " or lies outside the heap");
    return 0;
  }
  std::uint64_t seen = 0;
  for (std::uint64_t off = st->head.load(std::memory_order_acquire); off != 0;) {
    const auto* n = img.at<DictNode>(off);
    if (!n) {
      problems.push_back("a node link points outside the heap");
      break;
    }
    if (n->tag != DICT_NODE_TAG) {
      problems.push_back("node at offset " + std::to_string(off) + " has a bad tag");
      break;
    }
    if (!DictNode::rooms_valid(n->rooms, n->value_len)) {
      problems.push_back("node at offset " + std::to_string(off) + " has a bad rooms word");
      break;
    }
    std::uint64_t need = DictNode::bytes_for(n->key_len, n->value_len, n->rooms) - sizeof(DictNode);
    if (!img.at<DictNode>(off, need)) {
      problems.push_back("node at offset " + std::to_string(off) + " runs past the heap");
      break;
    }
    if (++seen > img.max_nodes()) {
      problems.push_back("its node list is a cycle");
      break;
    }
    if (seen <= limit) {
      const auto* k = reinterpret_cast<const char*>(n) + sizeof(DictNode);
      const auto* v = reinterpret_cast<const char*>(n) + DictNode::value_at(n->key_len, n->value_len, n->rooms);
      row(img.bytes(k, n->key_len), img.bytes(v, n->value_len));
    }
    off = n->next.load(std::memory_order_acquire);
  }
  return seen;
}

std::uint64_t walk_list(const Image& img, const ObjectInfo& o, std::size_t limit,
                        std::vector<std::string>& problems,
                        const std::function<void(std::span<const std::byte>)>& row) {
  const auto* st = img.at<ListState>(o.offset);
  if (!st || o.state_bytes < sizeof(ListState)) {
    problems.push_back("its state is too small for a " + o.kind + " or lies outside the heap");
    return 0;
  }
  std::uint64_t aoff = st->array.load(std::memory_order_acquire);
  if (aoff == 0) return 0;
  const auto* arr = img.at<ListArray>(aoff);
  if (!arr || arr->tag != LIST_ARRAY_TAG) {
    problems.push_back("its item array is missing or has a bad tag");
    return 0;
  }
  std::uint64_t size = arr->size.load(std::memory_order_acquire);
  if (arr->capacity == 0 || size > arr->capacity || !img.at<ListArray>(aoff, 8 * (arr->capacity - 1))) {
    problems.push_back("its item array's size or capacity is impossible");
    return 0;
  }
  for (std::uint64_t i = 0; i < size; ++i) {
    const auto* it = img.at<ListItem>(arr->items[i].load(std::memory_order_acquire));
    if (!it || it->tag != LIST_ITEM_TAG || !img.at<ListItem>(arr->items[i].load(), it->len)) {
      problems.push_back("item " + std::to_string(i) + " is outside the heap or has a bad tag");
      return i;
    }
    if (i < limit) row(img.bytes(reinterpret_cast<const char*>(it) + sizeof(ListItem), it->len));
  }
  return size;
}

bool is_queue(const ObjectInfo& o) {
  return o.kind == "queue" || o.kind == "joinable_queue" || o.kind == "simple_queue";
}

// Walks a queue's committed records, oldest first (the queue's own walker, on the image).
std::uint64_t walk_queue_image(const Image& img, const ObjectInfo& o, std::size_t limit,
                               std::vector<std::string>& problems,
                               const std::function<void(std::span<const std::byte>)>& row) {
  const auto* st = img.at<QueueState>(o.offset);
  if (!st || o.state_bytes < sizeof(QueueState)) {
    problems.push_back("its state is too small for a queue or lies outside the heap");
    return 0;
  }
  const auto* ring = img.range(st->ring_offset, st->ring_bytes);
  if (!ring) {
    problems.push_back("its ring lies outside the heap");
    return 0;
  }
  std::uint64_t seen = 0;
  std::uint32_t messages = 0;
  std::string p = walk_queue(*st, ring, img.heap_end(), [&](const QueueRecord& r) {
    if (++seen > limit) return false;
    if (!r.in_heap) {
      row(r.inline_bytes);
    } else if (const auto* payload = img.range(r.heap_offset, r.heap_size)) {
      row(img.bytes(payload, static_cast<std::size_t>(r.heap_size)));
    } else {
      problems.push_back("a large message's block lies outside the heap");
      return false;
    }
    return true;
  }, &messages);
  if (!p.empty()) problems.push_back(p);
  return messages;
}

// The size of a fundamental type spelled as the directory spells it (type_name<T>()), for
// the layouts that depend on it (Value<T>, Array<T>); nullopt for any other type.
std::optional<std::size_t> fundamental_size(std::string_view t) {
  static const std::pair<std::string_view, std::size_t> known[] = {
      {"bool", 1}, {"char", 1}, {"signed char", 1}, {"unsigned char", 1},
      {"short int", 2}, {"short unsigned int", 2}, {"int", 4}, {"unsigned int", 4},
      {"float", 4}, {"long int", 8}, {"long unsigned int", 8}, {"long long int", 8},
      {"long long unsigned int", 8}, {"double", 8}};
  for (auto& [name, size] : known) {
    if (t == name) return size;
  }
  return std::nullopt;
}

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Value<T> of a fundamental T: lock-free, so one slot at the first T-aligned offset after the
// header and the `current` word (value.hpp, ValueState).
bool dump_value(const Image& img, const ObjectInfo& o, DumpResult& d) {
  auto sz = fundamental_size(o.value_type);
  if (!sz) return false;
  std::uint64_t at = o.offset + align_up(sizeof(ObjectHeader) + 4, *sz);
  const std::byte* p = img.range(at, *sz);
  if (!p || at + *sz > o.offset + o.state_bytes) {
    d.note = "its value lies outside its state";
    return true;
  }
  d.rows.push_back({std::nullopt, format_value(o.value_type, img.bytes(p, *sz))});
  return true;
}

// Array<T> of a fundamental T: the element count after the header, then the elements at the
// first T-aligned offset (array.hpp, ArrayState).
bool dump_array(const Image& img, const ObjectInfo& o, std::size_t limit, DumpResult& d) {
  auto sz = fundamental_size(o.value_type);
  if (!sz) return false;
  const std::byte* np = img.range(o.offset + sizeof(ObjectHeader), 8);
  if (!np) return true;
  std::uint64_t n;
  std::memcpy(&n, np, 8);
  std::uint64_t data = o.offset + align_up(sizeof(ObjectHeader) + 8, *sz);
  if (n > o.state_bytes / *sz || !img.range(data, n * *sz) || data + n * *sz > o.offset + o.state_bytes) {
    d.note = "its element count (" + std::to_string(n) + ") does not fit its state";
    return true;
  }
  for (std::uint64_t i = 0; i < n && i < limit; ++i) {
    d.rows.push_back({std::to_string(i), format_value(o.value_type, img.bytes(img.range(data + i * *sz, *sz), *sz))});
  }
  d.truncated = n > limit;
  return true;
}

std::string no_listing(const ObjectInfo& o, const void* base, std::size_t size) {
  const auto* bytes = static_cast<const char*>(base);
  std::uint64_t state_end = std::min<std::uint64_t>(o.offset + o.state_bytes, size);
  const std::uint64_t from = o.offset + sizeof(ObjectHeader);
  std::span<const std::byte> state;
  if (from < state_end) {
    state = {reinterpret_cast<const std::byte*>(bytes + from), static_cast<std::size_t>(state_end - from)};
  }
  return "this version cannot list the contents of a " + o.kind + "; its state after the header: " +
         hex(state, 64);
}

}  // namespace

DumpResult dump_object(const void* base, std::size_t size, const ObjectInfo& o, std::size_t limit) {
  DumpResult d;
  Image img(base, size);
  std::vector<std::string> problems;
  std::uint64_t n = 0;
  if (o.kind == "dict") {
    n = walk_dict(img, o, limit, problems, [&](auto k, auto v) {
      d.rows.push_back({format_value(o.key_type, k), format_value(o.value_type, v)});
    });
  } else if (o.kind == "list") {
    n = walk_list(img, o, limit, problems,
                  [&](auto v) { d.rows.push_back({std::nullopt, format_value(o.value_type, v)}); });
  } else if (is_queue(o)) {
    n = walk_queue_image(img, o, limit, problems,
                         [&](auto v) { d.rows.push_back({std::nullopt, format_value(o.value_type, v)}); });
  } else if ((o.kind == "value" && dump_value(img, o, d)) ||
             (o.kind == "array" && dump_array(img, o, limit, d))) {
    return d;
  } else {
    d.note = no_listing(o, base, size);
    return d;
  }
  d.truncated = n > limit;
  if (!problems.empty()) d.note = "stopped: " + problems.front();
  return d;
}

std::vector<std::string> check_object(const void* base, std::size_t size, const ObjectInfo& o) {
  Image img(base, size);
  std::vector<std::string> problems;
  std::uint64_t n = 0;
  if (o.kind == "dict") {
    n = walk_dict(img, o, 0, problems, [](auto, auto) {});
  } else if (o.kind == "list") {
    n = walk_list(img, o, 0, problems, [](auto) {});
  } else if (is_queue(o)) {
    n = walk_queue_image(img, o, 0, problems, [](auto) {});
  } else {
    return problems;
  }
  // The element count is derived state: it may lag while a writer holds the lock, and is
  // recomputed when a dead writer's lock is recovered. Only a free lock makes it a finding.
  // A queue's depth is the difference of its head and tail counters, which walk_queue
  // already checked against the records; its ObjectHeader count is a hint for `show`.
  if (problems.empty() && !is_queue(o) && o.lock.holder == 0 && n != o.count) {
    problems.push_back("its element count says " + std::to_string(o.count) + " but " +
                       std::to_string(n) + " elements are linked");
  }
  return problems;
}

}  // namespace mpp::inspect
