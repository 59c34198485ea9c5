#include "protocol.hpp"

#include <cstring>

namespace mpp::detail::pool {

void append_error(std::string& out, const std::string& type, const std::string& message) {
  auto n = static_cast<std::uint32_t>(type.size());
  append_raw(out, &n, sizeof n);
  out += type;
  out += message;
}

std::pair<std::string, std::string> parse_error(ByteView payload) {
  Reader r(payload);
  auto n = r.take_raw<std::uint32_t>();
  std::string type(as_chars(r.take(n)));
  std::string message(as_chars(payload.subspan(sizeof n + n)));
  return {std::move(type), std::move(message)};
}

std::string record_of(const ResultHeader& h) {
  std::string out(sizeof(std::uint32_t), '\0');
  append_raw(out, &h, sizeof h);
  return out;
}

void seal_record(std::string& r) {
  auto n = static_cast<std::uint32_t>(r.size() - sizeof(std::uint32_t));
  std::memcpy(r.data(), &n, sizeof n);
}

std::string task_record(ByteView frame) {
  std::string r(sizeof(std::uint32_t), '\0');
  r += as_chars(frame);
  seal_record(r);
  return r;
}

void copy_message(void* ctx, ByteView bytes) {
  static_cast<std::string*>(ctx)->assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace mpp::detail::pool
