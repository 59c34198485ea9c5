// Connection: one end of a Pipe, as Python's multiprocessing.connection.Connection, and
// mpp::wait, as multiprocessing.connection.wait.
//
// A Connection owns one file descriptor (an AF_UNIX SOCK_SEQPACKET socket, whose records
// keep their boundaries). Every message is one frame: a first record holding a 16-byte
// header (magic, a check word, the payload length) and up to first_record_payload bytes of
// the payload, then as many records of at most chunk_record_payload bytes as the rest
// needs. So a small message costs one send and one receive, as a raw socketpair's would,
// and a large one never asks the kernel for more than one chunk at a time. The header
// makes the stream self-checking: bytes that are not a frame (garbage written into the
// socket, a frame cut short by a dying sender, a length above the connection's limit, a
// record longer than the frame announced) are a DecodeError, after which the connection
// is closed, because the stream can no longer be trusted to be in step. Nothing is ever
// allocated beyond what has actually arrived (a large payload's buffer grows as its
// records come in), so a lying length cannot make the receiver allocate gigabytes.
//
// A Connection reads exactly one frame per recv and buffers nothing between calls, so, as
// in Python, a forked child may go on using an inherited end where the parent left off;
// two processes reading or writing the same end at the same time interleave frames (don't).
//
// After a crash: a sender killed in the middle of a frame leaves a truncated frame; the
// receiver gets DecodeError (or EOFError if nothing of the frame was sent) and the end is
// closed. The process is never killed by SIGPIPE: writes use MSG_NOSIGNAL.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/futex.hpp"
#include "mpp/detail/os/fd.hpp"
#include "mpp/errors.hpp"

namespace mpp {

// The untyped part of every Connection<T>: the descriptor, framing, and the byte-level
// calls (send_bytes, recv_bytes, recv_bytes_into, poll). Not copyable; movable.
class ConnectionBase {
 public:
  // The default limit on one incoming message (1 GiB); see set_max_message_bytes.
  static constexpr std::size_t default_max_message_bytes = std::size_t{1} << 30;

  // A closed connection.
  ConnectionBase() noexcept = default;
  // Takes ownership of `fd` (closed by close() or the destructor).
  ConnectionBase(int fd, bool readable, bool writable) noexcept
      : fd_(fd), readable_(readable), writable_(writable) {}
  ~ConnectionBase() { close(); }
  ConnectionBase(ConnectionBase&& o) noexcept
      : fd_(std::move(o.fd_)), readable_(o.readable_), writable_(o.writable_),
        max_message_(o.max_message_) {}
  ConnectionBase& operator=(ConnectionBase&& o) noexcept;
  ConnectionBase(const ConnectionBase&) = delete;
  ConnectionBase& operator=(const ConnectionBase&) = delete;

  // Python's closed / readable / writable properties.
  bool closed() const noexcept { return !fd_; }
  bool readable() const noexcept { return readable_; }
  bool writable() const noexcept { return writable_; }

  // The descriptor, for select/poll/epoll. Throws OSError (EBADF) when closed.
  int fileno() const;

  // Closes this end (idempotent). The other end then sees EOF once it has read what was
  // already sent.
  void close() noexcept;

  // Whether there is something to read: a message, or EOF (then recv throws EOFError).
  // poll() returns at once; poll(timeout) waits up to `timeout`; poll(std::nullopt)
  // waits forever. Throws OSError when closed or write-only.
  bool poll() { return poll_until(detail::Clock::now()); }
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_until(*detail::deadline_after(timeout));
  }
  bool poll(std::nullopt_t) { return poll_until(std::nullopt); }

  // Sends bytes [offset, offset+size) of `buf` as one message (Python's send_bytes).
  // Throws ValueError when the range lies outside `buf`, OSError when closed, read-only,
  // or the other end is gone (EPIPE; never SIGPIPE).
  void send_bytes(std::string_view buf, std::size_t offset = 0,
                  std::size_t size = std::string_view::npos);
  void send_bytes(detail::ByteView buf) { send_bytes(detail::as_chars(buf)); }

  // Receives one message's bytes. Throws EOFError when the other end closed and nothing
  // is left; OSError (EMSGSIZE, connection closed) when the message is longer than
  // `maxlength`, as Python; DecodeError (connection closed) for a garbage or truncated
  // frame.
  std::string recv_bytes(std::optional<std::size_t> maxlength = std::nullopt);

  // Receives one message into `buf` at `offset` and returns its length. Throws
  // BufferTooShort (carrying the whole message, which is consumed) when it does not fit,
  // ValueError when offset > buf.size(), and otherwise as recv_bytes.
  std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);
  std::size_t recv_bytes_into(std::span<char> buf, std::size_t offset = 0) {
    return recv_bytes_into(std::as_writable_bytes(buf), offset);
  }

  // The largest incoming message accepted (default 1 GiB): a frame announcing more is a
  // DecodeError and closes the connection. A guard against a corrupt or hostile peer.
  void set_max_message_bytes(std::size_t n) noexcept { max_message_ = n; }
  std::size_t max_message_bytes() const noexcept { return max_message_; }

 protected:
  // Payload bytes carried by a frame's first record, next to the header, and by each
  // record after it. Records stay well below a socket's default send buffer (208 KiB).
  static constexpr std::size_t first_record_payload = 4096 - 16;
  static constexpr std::size_t chunk_record_payload = std::size_t{64} << 10;

  // The first record of an incoming frame: the payload's length and its first `got` bytes.
  struct FrameStart {
    std::size_t length = 0;  // the payload's length, from the header
    std::size_t got = 0;     // payload bytes received so far, in head
    alignas(std::max_align_t) std::byte head[first_record_payload];  // the payload's start
    // The payload bytes received so far.
    detail::ByteView bytes() const { return {head, got}; }
    // True when the first record held the whole payload.
    bool whole() const { return got == length; }
  };

  // Sends one frame holding `payload`. Throws as send_bytes.
  void send_frame(detail::ByteView payload);
  // Receives a frame's first record and checks its header. Throws EOFError (clean EOF
  // before the frame), DecodeError (bad header or record; closes).
  void recv_first(FrameStart& f);
  // Receives the frame's remaining records, exactly n bytes, into dst; EOF part way or a
  // record longer than what is left is a DecodeError (closes).
  void recv_rest(std::byte* dst, std::size_t n);
  // The whole payload of the frame begun by `f` into `out`, growing it only as records
  // arrive.
  void recv_payload(std::string& out, const FrameStart& f);
  // One record into dst (cap bytes), then dst2 (cap2); 0 at EOF. A record that does not
  // fit is a DecodeError (closes). With `spin`, polls for up to this end's adaptive spin
  // budget (detail/spin.hpp) before it blocks.
  std::size_t recv_record(void* dst, std::size_t cap, std::size_t cap2 = 0, void* dst2 = nullptr,
                          bool spin = false);

 private:
  bool poll_until(std::optional<detail::Clock::time_point> deadline);
  void check_open(bool want_read) const;
  [[noreturn]] void protocol_error(const std::string& what);

  detail::os::Fd fd_;
  bool readable_ = false;
  bool writable_ = false;
  std::size_t max_message_ = default_max_message_bytes;
  std::uint32_t spin_ns_ = 20'000;  // this end's spin before a blocking receive (ns)
};

// One end of a Pipe carrying values of type T through the codec (detail/codec.hpp):
// Python's Connection with send/recv typed.
template <class T>
class Connection : public ConnectionBase {
 public:
  // Takes ownership of a connected socket descriptor, as ConnectionBase(fd) does.
  using ConnectionBase::ConnectionBase;

  // Sends `value` as one message. Throws as send_bytes (and whatever T's serialize throws).
  void send(const T& value) { send_frame(detail::encode(value).bytes()); }

  // Receives one value. Throws EOFError when the other end closed and nothing is left;
  // DecodeError when the message is not a T (a well-formed frame with the wrong contents
  // is consumed and the connection stays usable; a broken frame closes it).
  T recv() {
    FrameStart f;
    recv_first(f);
    // A trivial T that fits the first record is decoded from it; a larger one can only come
    // whole through recv_payload (and a wrong size is the same DecodeError either way).
    if constexpr (detail::encoding_of<T> == detail::Encoding::trivial && sizeof(T) <= first_record_payload) {
      if (f.whole()) return detail::decode<T>(f.bytes());  // any size error is DecodeError
    }
    std::string bytes;
    recv_payload(bytes, f);
    if constexpr (detail::encoding_of<T> == detail::Encoding::string) {
      return bytes;
    } else {
      return detail::decode<T>(detail::as_bytes(bytes));
    }
  }
};

// multiprocessing.connection.wait: blocks until at least one descriptor is ready to read
// (data, EOF or an error), or the timeout passes (then returns an empty list); no timeout
// waits forever. Returns the ready ones, in the given order. Throws OSError.
std::vector<int> wait(std::span<const int> fds,
                      std::optional<detail::Clock::duration> timeout = std::nullopt);

// The same for objects with fileno() (Connections, or anything else that has one).
template <class Object>
std::vector<Object*> wait(const std::vector<Object*>& objects,
                          std::optional<detail::Clock::duration> timeout = std::nullopt) {
  std::vector<int> fds;
  fds.reserve(objects.size());
  for (Object* o : objects) fds.push_back(o->fileno());
  std::vector<int> ready = wait(std::span<const int>(fds), timeout);
  std::vector<Object*> out;
  for (std::size_t i = 0, r = 0; i < objects.size() && r < ready.size(); ++i) {
    if (fds[i] == ready[r]) {
      out.push_back(objects[i]);
      ++r;
    }
  }
  return out;
}

}  // namespace mpp
