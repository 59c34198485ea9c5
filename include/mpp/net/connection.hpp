// mpp::net::Connection: one stream socket speaking the framing of Python's
// multiprocessing.connection, and the HMAC authentication
// handshake of Python 3.11 and of 3.12+ (§2), in both roles.
//
// Frames are a 4-byte big-endian signed length, or -1 and an 8-byte big-endian length for
// frames over 2 GiB, then the payload. A frame announced longer than the receiver's limit
// is refused before any memory is allocated for it, and the connection is then unusable. A
// frame within the limit is not allocated at its announced size either: the receive buffer
// grows (doubling) as its bytes arrive, so a peer that announces a large frame and sends
// nothing costs 64 KiB, and a BufferBudget can bound what many connections hold together.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mpp/detail/os/fd.hpp"
#include "mpp/errors.hpp"

namespace mpp::net {

// The clock of every deadline and timeout of mpp::net (monotonic).
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

// The handshake's fixed messages, as multiprocessing.connection spells them.
inline constexpr std::string_view kChallenge = "#CHALLENGE#";
inline constexpr std::string_view kWelcome = "#WELCOME#";
inline constexpr std::string_view kFailure = "#FAILURE#";

// Receive-buffer memory shared by many connections (a server's total), counted in bytes of
// buffer capacity beyond each connection's first 64 KiB (which every connection may hold, so
// that small requests never wait for large ones). Thread-safe.
class BufferBudget {
 public:
  // A budget of `limit` bytes, none taken yet.
  explicit BufferBudget(std::size_t limit) : limit_(limit) {}
  // Takes `n` bytes of the budget; returns false, taking nothing, if that would pass the limit.
  bool try_take(std::size_t n) noexcept {
    std::size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ - used) return false;
    } while (!used_.compare_exchange_weak(used, used + n, std::memory_order_relaxed));
    return true;
  }
  // Returns `n` bytes taken before.
  void give_back(std::size_t n) noexcept { used_.fetch_sub(n, std::memory_order_relaxed); }
  std::size_t in_use() const noexcept { return used_.load(std::memory_order_relaxed); }
  std::size_t limit() const noexcept { return limit_; }

 private:
  const std::size_t limit_;
  std::atomic<std::size_t> used_{0};
};

// One connected stream socket, framed as multiprocessing.connection frames (see the top of
// this file). Movable, not copyable; one thread at a time sends or receives on it (shutdown
// and shutdown_read may be called from any thread).
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
  // TimeoutError past `deadline`, OSError for a socket error, and OSError(ENOMEM) when the
  // buffer would have to grow past what the budget (set_budget) has left; after any of
  // these the connection is out of step and must be closed.
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

  // Charges this connection's receive buffer, now and as it grows, to `budget` (released as
  // it shrinks and by the destructor). Call before the first receive.
  void set_budget(std::shared_ptr<BufferBudget> budget);

  // "host:port" of the peer, for log lines.
  std::string peer_name() const;
  int fd() const noexcept { return fd_.get(); }

 private:
  void fill(std::size_t need, Deadline deadline, bool frame_started);
  void resize_buffer(std::size_t size);

  mpp::detail::os::Fd fd_;
  // Received bytes not consumed yet are buf_[buf_pos_, buf_end_); the rest of buf_ is room,
  // kept between frames so that a read does not clear memory.
  std::string buf_;
  std::size_t buf_pos_ = 0;
  std::size_t buf_end_ = 0;
  std::shared_ptr<BufferBudget> budget_;  // charged buf_.size() bytes, if set
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

// The pieces of both handshakes, for a server that runs them without blocking a thread:
// a fresh challenge message (`{sha256}` + 40 CSPRNG bytes; the frame is kChallenge + it);
// whether `answer` is a right digest of `message` (constant-time; a 16-byte HMAC-MD5 only
// if `allow_legacy`); and the answer to a challenge frame a peer sent (AuthenticationError
// if it is malformed or names an unknown digest).
std::string new_challenge();
bool verify_answer(std::string_view message, std::string_view answer, std::string_view authkey,
                   bool allow_legacy);
std::string answer_for(std::string_view challenge_frame, std::string_view authkey);

// HMAC of `message` under `key` with the digest Python calls `name` (md5, sha256, sha384,
// sha3_256, sha3_384). Throws ValueError for another name.
std::string hmac_digest(std::string_view name, std::string_view key, std::string_view message);

}  // namespace mpp::net
