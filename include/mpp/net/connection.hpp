// mpp::net::Connection: one stream socket speaking the framing of Python's
// multiprocessing.connection (python-wire-protocol.md §1), and the HMAC authentication
// handshake of Python 3.11 and of 3.12+ (§2), in both roles.
//
// Frames are a 4-byte big-endian signed length, or -1 and an 8-byte big-endian length for
// frames over 2 GiB, then the payload. A frame announced longer than the receiver's limit
// is refused before any memory is allocated for it, and the connection is then unusable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "mpp/errors.hpp"

namespace mpp::net {

using Clock = std::chrono::steady_clock;
// A point after which a blocking read or write gives up; nullopt waits for ever.
using Deadline = std::optional<Clock::time_point>;

// A timeout in seconds (any std::chrono duration converts); nullopt blocks for ever.
using Timeout = std::optional<std::chrono::duration<double>>;

// Deadline `d` from now, or no deadline for a zero or negative duration.
Deadline deadline_after(std::chrono::milliseconds d);

// The frame size refused during the handshake (Python's own limit) and, by default, after it.
inline constexpr std::size_t kHandshakeMaxFrame = 256;
inline constexpr std::size_t kDefaultMaxFrame = std::size_t{64} << 20;

class Connection {
 public:
  // Takes ownership of a connected stream socket `fd` (closed by the destructor).
  explicit Connection(int fd);
  Connection(Connection&& o) noexcept;
  Connection& operator=(Connection&& o) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // A TCP connection to host:port (name or address), with TCP_NODELAY. Throws OSError
  // (ECONNREFUSED, ETIMEDOUT after `timeout`, EHOSTUNREACH...) naming the address.
  static Connection connect(const std::string& host, std::uint16_t port,
                            std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Sends one frame, prefix and payload in a single sendmsg. Throws OSError (EPIPE when the
  // peer has gone) or TimeoutError past `deadline`.
  void send_bytes(std::string_view payload, Deadline deadline = std::nullopt);

  // Receives one frame. Returns nullopt when the peer closed cleanly before a frame began.
  // Throws DecodeError for a frame longer than `max_length` or a negative length other than
  // -1 (nothing is allocated for it), EOFError when the peer closes inside a frame,
  // TimeoutError past `deadline`, OSError for a socket error.
  std::optional<std::string> recv_bytes(std::size_t max_length = kDefaultMaxFrame,
                                        Deadline deadline = std::nullopt);

  // Shuts the socket down for reading and writing, so a thread blocked in recv_bytes returns.
  // Safe to call from another thread.
  void shutdown() noexcept;
  // Shuts the socket down for reading only: a blocked recv_bytes returns, while a reply
  // being sent still goes out. Safe to call from another thread.
  void shutdown_read() noexcept;

  // Makes a recv_bytes without deadline throw TimeoutError after `idle` without data
  // (SO_RCVTIMEO: no poll per frame); 0 waits for ever.
  void set_recv_timeout(std::chrono::milliseconds idle);

  // "host:port" of the peer, for log lines.
  std::string peer_name() const;
  int fd() const noexcept { return fd_; }

 private:
  void fill(std::size_t need, Deadline deadline, bool frame_started);

  int fd_ = -1;
  // Received bytes not consumed yet are buf_[buf_pos_, buf_end_); the rest of buf_ is room,
  // kept between frames so that a read does not clear memory.
  std::string buf_;
  std::size_t buf_pos_ = 0;
  std::size_t buf_end_ = 0;
};

// The server's side of the handshake (Python: multiprocessing.connection.deliver_challenge):
// sends a `{sha256}` + 40-byte challenge from a CSPRNG and checks the answer in constant
// time. Accepts `{md5|sha256|sha384|sha3_256|sha3_384}` answers, and a raw 16-byte HMAC-MD5
// answer (what Python 3.11 and older send) when `allow_legacy` is set. Sends #WELCOME# or
// #FAILURE#; on failure throws AuthenticationError("digest received was wrong").
void deliver_challenge(Connection& c, std::string_view authkey, Deadline deadline = std::nullopt,
                       bool allow_legacy = true);

// The client's side (Python: answer_challenge): answers a legacy 20-byte challenge with raw
// HMAC-MD5 and a `{name}` challenge with `{name}` + HMAC-name. Throws AuthenticationError
// when the challenge is malformed or names an unknown digest, or when the peer answers
// #FAILURE# ("digest sent was rejected").
void answer_challenge(Connection& c, std::string_view authkey, Deadline deadline = std::nullopt);

// HMAC of `message` under `key` with the digest Python calls `name` (md5, sha256, sha384,
// sha3_256, sha3_384). Throws ValueError for another name.
std::string hmac_digest(std::string_view name, std::string_view key, std::string_view message);

}  // namespace mpp::net
