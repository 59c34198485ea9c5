#include "mpp/connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "mpp/detail/spin.hpp"

namespace mpp {
namespace {

// The frame header. Native byte order: both ends are on one machine. `check` is derived
// from magic and length so that random bytes are very unlikely to pass as a header.
struct FrameHeader {
  std::uint32_t magic;
  std::uint32_t check;
  std::uint64_t length;
};
static_assert(sizeof(FrameHeader) == 16);

constexpr std::uint32_t kFrameMagic = 0x3150504d;  // "MPP1"

constexpr std::uint32_t frame_check(std::uint64_t length) {
  return ~(kFrameMagic ^ static_cast<std::uint32_t>(length) ^
           static_cast<std::uint32_t>(length >> 32));
}

// A payload's buffer grows by at most this much ahead of the bytes actually received.
constexpr std::size_t kGrowStep = std::size_t{4} << 20;

timespec to_timespec(detail::Clock::duration d) {
  if (d < detail::Clock::duration::zero()) d = {};
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

// poll(2) over `fds` until one is readable or the deadline passes, retrying on EINTR
// with the time that is left.
int poll_fds(pollfd* fds, std::size_t n, std::optional<detail::Clock::time_point> deadline) {
  for (;;) {
    timespec ts{};
    if (deadline) ts = to_timespec(*deadline - detail::Clock::now());
    int r = ppoll(fds, n, deadline ? &ts : nullptr, nullptr);
    if (r >= 0) return r;
    if (errno != EINTR) throw_os_error(errno, "poll on a Connection");
  }
}

}  // namespace

ConnectionBase& ConnectionBase::operator=(ConnectionBase&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = std::move(o.fd_);
    readable_ = o.readable_;
    writable_ = o.writable_;
    max_message_ = o.max_message_;
  }
  return *this;
}

int ConnectionBase::fileno() const {
  if (!fd_) throw OSError(EBADF, "fileno() of a closed Connection");
  return fd_.get();
}

void ConnectionBase::close() noexcept {
  fd_.reset();
}

void ConnectionBase::check_open(bool want_read) const {
  if (!fd_) throw OSError(EBADF, "the Connection is closed");
  if (want_read && !readable_) throw OSError(EBADF, "the Connection is write-only");
  if (!want_read && !writable_) throw OSError(EBADF, "the Connection is read-only");
}

void ConnectionBase::protocol_error(const std::string& what) {
  close();
  throw DecodeError(what + "; the Connection was closed because its byte stream can no longer "
                           "be trusted (was something other than mpp writing to its socket?)");
}

bool ConnectionBase::poll_until(std::optional<detail::Clock::time_point> deadline) {
  check_open(true);
  pollfd p{fd_.get(), POLLIN, 0};
  return poll_fds(&p, 1, deadline) > 0;
}

void ConnectionBase::send_bytes(std::string_view buf, std::size_t offset, std::size_t size) {
  if (offset > buf.size()) throw ValueError("send_bytes: offset is past the end of the buffer");
  if (size == std::string_view::npos) size = buf.size() - offset;
  if (size > buf.size() - offset) {
    throw ValueError("send_bytes: offset + size is past the end of the buffer");
  }
  send_frame(detail::as_bytes(buf.substr(offset, size)));
}

namespace {

// One record: sendmsg on a SOCK_SEQPACKET socket sends all of it or nothing.
void send_record(int fd, iovec* iov, int n, std::size_t total) {
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = static_cast<std::size_t>(n);
  ssize_t r;
  do r = ::sendmsg(fd, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EPIPE || errno == ECONNRESET) {
      throw_os_error(errno, "send on a Connection whose other end is closed");
    }
    throw_os_error(errno, "send on a Connection");
  }
  if (static_cast<std::size_t>(r) != total) {
    throw OSError(EIO, "send on a Connection sent part of a record (is its descriptor a "
                       "stream socket rather than one of mpp::Pipe's?)");
  }
}

}  // namespace

void ConnectionBase::send_frame(detail::ByteView payload) {
  check_open(false);
  FrameHeader h{kFrameMagic, frame_check(payload.size()), payload.size()};
  auto* data = const_cast<std::byte*>(payload.data());
  std::size_t first = std::min(payload.size(), first_record_payload);
  iovec iov[2] = {{&h, sizeof h}, {data, first}};
  send_record(fd_.get(), iov, first ? 2 : 1, sizeof h + first);
  for (std::size_t off = first; off < payload.size(); off += chunk_record_payload) {
    std::size_t len = std::min(chunk_record_payload, payload.size() - off);
    iovec chunk{data + off, len};
    send_record(fd_.get(), &chunk, 1, len);
  }
}

std::size_t ConnectionBase::recv_record(void* dst, std::size_t cap, std::size_t cap2, void* dst2,
                                        bool spin) {
  iovec iov[2] = {{dst, cap}, {dst2, cap2}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = dst2 ? 2 : 1;
  ssize_t r = -1;
  // Non-blocking receives for up to the spin budget (detail/spin.hpp): a peer that answers
  // within it is caught without the sleep and wake-up of a blocking receive.
  bool done = spin && detail::spin_until(
                          [&] {
                            r = ::recvmsg(fd_.get(), &m, MSG_DONTWAIT);
                            return r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                                              errno != EINTR);
                          },
                          spin_ns_);
  if (!done) {
    do r = ::recvmsg(fd_.get(), &m, 0);
    while (r < 0 && errno == EINTR);
  }
  if (r < 0) throw_os_error(errno, "recv on a Connection");
  if (m.msg_flags & MSG_TRUNC) {
    protocol_error("received a record longer than its frame allows");
  }
  return static_cast<std::size_t>(r);
}

void ConnectionBase::recv_first(FrameStart& f) {
  check_open(true);
  FrameHeader h;
  std::size_t n = recv_record(&h, sizeof h, sizeof f.head, f.head, /*spin=*/true);
  if (n == 0) throw EOFError("the other end of the Connection was closed; nothing is left");
  if (n < sizeof h) {
    protocol_error("truncated frame: a record of " + std::to_string(n) +
                   " bytes, shorter than a 16-byte header");
  }
  if (h.magic != kFrameMagic || h.check != frame_check(h.length)) {
    protocol_error("received bytes that are not an mpp frame header");
  }
  if (h.length > max_message_) {
    protocol_error("a frame announces " + std::to_string(h.length) +
                   " bytes, more than this Connection's limit of " + std::to_string(max_message_) +
                   " (set_max_message_bytes)");
  }
  f.length = static_cast<std::size_t>(h.length);
  f.got = n - sizeof h;
  if (f.got > f.length) protocol_error("received a record longer than its frame allows");
}

void ConnectionBase::recv_rest(std::byte* dst, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    std::size_t r = recv_record(dst + got, std::min(n - got, chunk_record_payload));
    if (r == 0) {
      protocol_error("truncated frame: the other end closed with " + std::to_string(n - got) +
                     " payload bytes still to come");
    }
    got += r;
  }
}

void ConnectionBase::recv_payload(std::string& out, const FrameStart& f) {
  out.assign(reinterpret_cast<const char*>(f.head), f.got);
  std::size_t done = f.got;
  while (done < f.length) {
    // Ahead of the bytes that arrived, grow by kGrowStep or by as much as arrived so far.
    std::size_t want = std::min(f.length - done, chunk_record_payload);
    if (out.size() < done + want) {
      out.resize(std::min(f.length, done + std::max({kGrowStep, done, want})));
    }
    std::size_t r = recv_record(out.data() + done, want);
    if (r == 0) {
      protocol_error("truncated frame: the other end closed after " + std::to_string(done) +
                     " of " + std::to_string(f.length) + " payload bytes");
    }
    done += r;
  }
}

std::string ConnectionBase::recv_bytes(std::optional<std::size_t> maxlength) {
  FrameStart f;
  recv_first(f);
  if (maxlength && f.length > *maxlength) {
    close();
    throw OSError(EMSGSIZE, "recv_bytes: the message has " + std::to_string(f.length) +
                                " bytes, more than maxlength " + std::to_string(*maxlength) +
                                "; the Connection was closed");
  }
  std::string out;
  recv_payload(out, f);
  return out;
}

std::size_t ConnectionBase::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
  if (offset > buf.size()) throw ValueError("recv_bytes_into: offset is past the end of the buffer");
  FrameStart f;
  recv_first(f);
  if (f.length > buf.size() - offset) {
    std::string whole;
    recv_payload(whole, f);
    throw BufferTooShort(std::move(whole));
  }
  std::memcpy(buf.data() + offset, f.head, f.got);
  recv_rest(buf.data() + offset + f.got, f.length - f.got);
  return f.length;
}

std::vector<int> wait(std::span<const int> fds, std::optional<detail::Clock::duration> timeout) {
  std::vector<pollfd> p;
  p.reserve(fds.size());
  for (int fd : fds) p.push_back({fd, POLLIN, 0});
  std::optional<detail::Clock::time_point> deadline;
  if (timeout) deadline = detail::Clock::now() + std::max(*timeout, detail::Clock::duration{});
  std::vector<int> ready;
  if (poll_fds(p.data(), p.size(), deadline) == 0) return ready;
  for (const pollfd& q : p) {
    if (q.revents & POLLNVAL) throw OSError(EBADF, "wait: a descriptor is not open");
    if (q.revents != 0) ready.push_back(q.fd);
  }
  return ready;
}

}  // namespace mpp
