// libFuzzer target for what a peer controls before and after authentication: the frame
// reader (Connection::recv_bytes), the handshake's answer side, and the pickle decoder.
// The first input byte picks the mode; the rest is the peer's bytes:
//   0: a pickle for unpickle(); whatever decodes must re-encode and decode to the same repr;
//   1: a byte stream read frame by frame (64 KiB limit), every frame then unpickled;
//   2: a stream a client authenticates over (answer_challenge) and then reads frames from.
// Anything but mpp::Error escaping, a crash, a leak or a sanitizer report is a finding.
// Built with clang++ -fsanitize=fuzzer,address,undefined by CMakeLists.txt here; the seeds
// come from tests/data/python-wire-vectors (make_seeds.py).
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mpp/errors.hpp"
#include "mpp/net/connection.hpp"
#include "mpp/net/pickle.hpp"

namespace {

void check_round_trip(const mpp::net::PyObject& v) {
  std::string again = mpp::net::pickle(v);
  auto back = mpp::net::unpickle(again);
  if (mpp::net::repr(back) != mpp::net::repr(v)) {
    std::fprintf(stderr, "round trip changed %s into %s\n", mpp::net::repr(v).c_str(), mpp::net::repr(back).c_str());
    std::abort();
  }
}

void decode(const std::string& bytes) {
  try {
    auto v = mpp::net::unpickle(bytes);
    try {
      check_round_trip(v);
    } catch (const mpp::Error&) {
      // Decodable but not encodable (a Token or exception the encoder refuses): fine.
    }
  } catch (const mpp::Error&) {
  }
}

void read_stream(const std::uint8_t* data, std::size_t size, bool handshake) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  // Inputs are capped at -max_len (4096 by the test), well inside a socket buffer.
  std::size_t off = 0;
  while (off < size) {
    ssize_t r = ::write(sv[1], data + off, size - off);
    if (r <= 0) std::abort();
    off += static_cast<std::size_t>(r);
  }
  ::shutdown(sv[1], SHUT_WR);
  mpp::net::Connection c(sv[0]);
  try {
    if (handshake) mpp::net::answer_challenge(c, "abc", mpp::net::deadline_after(std::chrono::milliseconds(1000)));
    while (auto frame = c.recv_bytes(std::size_t{1} << 16)) decode(*frame);
  } catch (const mpp::Error&) {
  }
  ::close(sv[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  switch (data[0] % 3) {
    case 0:
      decode(std::string(reinterpret_cast<const char*>(data + 1), size - 1));
      break;
    case 1:
      read_stream(data + 1, size - 1, false);
      break;
    default:
      read_stream(data + 1, size - 1, true);
      break;
  }
  return 0;
}
