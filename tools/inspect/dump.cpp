#include "dump.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>

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

DumpResult dump_object(const void* base, std::size_t size, const ObjectInfo& o, std::size_t limit) {
  (void)limit;
  DumpResult d;
  const auto* bytes = static_cast<const char*>(base);
  std::uint64_t state_end = o.offset + o.state_bytes;
  if (state_end > size) state_end = size;
  const std::uint64_t from = o.offset + sizeof(mpp::detail::ObjectHeader);
  std::span<const std::byte> state;
  if (from < state_end) {
    state = {reinterpret_cast<const std::byte*>(bytes + from), static_cast<std::size_t>(state_end - from)};
  }
  d.note = "this version cannot list the contents of a " + o.kind + "; its state after the header: " +
           hex(state, 64);
  return d;
}

std::vector<std::string> check_object(const void*, std::size_t, const ObjectInfo&) { return {}; }

}  // namespace mpp::inspect
