#include "mpp/connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

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
    fd_ = std::exchange(o.fd_, -1);
    readable_ = o.readable_;
    writable_ = o.writable_;
    max_message_ = o.max_message_;
  }
  return *this;
}

int ConnectionBase::fileno() const {
  if (fd_ < 0) throw OSError(EBADF, "fileno() of a closed Connection");
  return fd_;
}

void ConnectionBase::close() noexcept {
  if (fd_ >= 0) {
    // Linux closes the descriptor even when close() reports EINTR: never retry.
    ::close(fd_);
    fd_ = -1;
  }
}

void ConnectionBase::check_open(bool want_read) const {
  if (fd_ < 0) throw OSError(EBADF, "the Connection is closed");
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
  pollfd p{fd_, POLLIN, 0};
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

void ConnectionBase::send_frame(detail::ByteView payload) {
  check_open(false);
  FrameHeader h{kFrameMagic, frame_check(payload.size()), payload.size()};
  iovec iov[2] = {{&h, sizeof h},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  iovec* v = iov;
  int nv = payload.empty() ? 1 : 2;
  while (nv > 0) {
    msghdr m{};
    m.msg_iov = v;
    m.msg_iovlen = static_cast<std::size_t>(nv);
    ssize_t n = sendmsg(fd_, &m, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) {
        throw_os_error(errno, "send on a Connection whose other end is closed");
      }
      throw_os_error(errno, "send on a Connection");
    }
    // Partial write: skip what went out and send the rest.
    auto left = static_cast<std::size_t>(n);
    while (nv > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      ++v;
      --nv;
    }
    if (nv > 0) {
      v->iov_base = static_cast<char*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
}

std::size_t ConnectionBase::recv_header() {
  check_open(true);
  FrameHeader h;
  auto* p = reinterpret_cast<char*>(&h);
  std::size_t got = 0;
  while (got < sizeof h) {
    ssize_t n = ::recv(fd_, p + got, sizeof h - got, MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_os_error(errno, "recv on a Connection");
    }
    if (n == 0) {
      if (got == 0) throw EOFError("the other end of the Connection was closed; nothing is left");
      protocol_error("truncated frame: the other end closed after " + std::to_string(got) +
                     " bytes of a 16-byte header");
    }
    got += static_cast<std::size_t>(n);
  }
  if (h.magic != kFrameMagic || h.check != frame_check(h.length)) {
    protocol_error("received bytes that are not an mpp frame header");
  }
  if (h.length > max_message_) {
    protocol_error("a frame announces " + std::to_string(h.length) +
                   " bytes, more than this Connection's limit of " + std::to_string(max_message_) +
                   " (set_max_message_bytes)");
  }
  return static_cast<std::size_t>(h.length);
}

void ConnectionBase::recv_exact(void* dst, std::size_t n) {
  auto* p = static_cast<char*>(dst);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd_, p + got, n - got, MSG_WAITALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_os_error(errno, "recv on a Connection");
    }
    if (r == 0) {
      protocol_error("truncated frame: the other end closed after " + std::to_string(got) +
                     " of " + std::to_string(n) + " payload bytes");
    }
    got += static_cast<std::size_t>(r);
  }
}

void ConnectionBase::recv_payload(std::string& out, std::size_t n) {
  std::size_t done = 0;
  out.clear();
  while (done < n) {
    std::size_t chunk = std::min(n - done, std::max(kGrowStep, done));
    out.resize(done + chunk);
    recv_exact(out.data() + done, chunk);
    done += chunk;
  }
}

std::string ConnectionBase::recv_bytes(std::optional<std::size_t> maxlength) {
  std::size_t n = recv_header();
  if (maxlength && n > *maxlength) {
    close();
    throw OSError(EMSGSIZE, "recv_bytes: the message has " + std::to_string(n) +
                                " bytes, more than maxlength " + std::to_string(*maxlength) +
                                "; the Connection was closed");
  }
  std::string out;
  recv_payload(out, n);
  return out;
}

std::size_t ConnectionBase::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
  if (offset > buf.size()) throw ValueError("recv_bytes_into: offset is past the end of the buffer");
  std::size_t n = recv_header();
  if (n > buf.size() - offset) {
    std::string whole;
    recv_payload(whole, n);
    throw BufferTooShort(std::move(whole));
  }
  recv_exact(buf.data() + offset, n);
  return n;
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
