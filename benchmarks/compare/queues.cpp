// Workload 3: a producer process sends messages of 64 B, 4 KiB and 1 MiB to a consumer
// process. Throughput: messages from the producer's go (after its fork and start, which
// are not timed) to the last message read (msgs/s, MB/s). Latency: a ping-pong of one
// message each way, round trip time averaged over a run. Every measured run lasts at least
// 200 ms (the count grows until it does); each variant's channels are made once and reused
// by all its runs. Every message carries its sequence number, checked in order by the
// reader, and its length is checked too: lost, duplicated, torn or reordered messages are
// errors.
//
// Like with like: "mpp Queue, into a buffer" receives into one reused buffer, as Boost's
// message_queue must (a fixed buffer); "mpp" allocates a std::string per message, as a
// Python get() allocates its bytes. The mpp Pipe spins a little before it blocks, so it is
// compared with a raw socketpair that spins the same way, and both with a blocking one.
// The 1 MiB row's reference is a copy through shared memory between two processes (a copy
// in, a copy out, shm_ring.hpp): the ceiling of any copying queue.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "mpp/detail/spin.hpp"
#include "mpp/pipe.hpp"
#include "mpp/queue.hpp"
#include "shm_ring.hpp"
#include "workloads.hpp"

namespace bench {
namespace {

// ---- channels: one direction of one variant, made before fork, used on both sides ------

// A length, then the bytes, over a raw pipe (isolated) or a socketpair. A spinning reader
// first polls for up to the adaptive budget mpp's own waits use (detail/spin.hpp), then
// blocks: what mpp's Pipe does, without mpp.
struct FdChannel {
  int fd[2];
  bool spin = false;
  std::uint32_t budget_ns = mpp::detail::kSpinMinNs;
  explicit FdChannel(bool socket = false, bool spinning = false) : spin(spinning) {
    if (socket) {
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) != 0) throw std::runtime_error("socketpair");
    } else {
      if (pipe(fd) != 0) throw std::runtime_error("pipe");
      fcntl(fd[1], F_SETPIPE_SZ, 1 << 20);  // the largest unprivileged pipe: fewer wake-ups
    }
  }
  ~FdChannel() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  FdChannel(const FdChannel&) = delete;
  FdChannel& operator=(const FdChannel&) = delete;
  void send(const std::string& m) {
    std::uint64_t n = m.size();
    iovec iov[2] = {{&n, sizeof n}, {const_cast<char*>(m.data()), m.size()}};
    std::size_t done = 0, total = sizeof n + m.size();
    while (done < total) {  // a write of more than PIPE_BUF bytes may be partial
      ssize_t k = ::writev(fd[1], iov, 2);
      if (k < 0) throw std::runtime_error("writev failed");
      done += std::size_t(k);
      for (auto& v : iov) {
        const std::size_t take = std::min(v.iov_len, std::size_t(k));
        v.iov_base = static_cast<char*>(v.iov_base) + take;
        v.iov_len -= take;
        k -= ssize_t(take);
      }
    }
  }
  std::size_t recv(std::string& buf) {
    if (spin) {
      mpp::detail::spin_until(
          [&] {
            pollfd p{fd[0], POLLIN, 0};
            return ::poll(&p, 1, 0) > 0;
          },
          budget_ns);
    }
    const auto n = read_pod<std::uint64_t>(fd[0]);
    if (n > buf.size()) throw std::runtime_error("message larger than sent");
    read_all(fd[0], buf.data(), n);
    return n;
  }
};

struct PipeChannel : FdChannel {
  PipeChannel() : FdChannel(false, false) {}
};
struct SocketChannel : FdChannel {
  SocketChannel() : FdChannel(true, false) {}
};
struct SpinningSocketChannel : FdChannel {
  SpinningSocketChannel() : FdChannel(true, true) {}
};

// Two processes copying through shared memory (shm_ring.hpp): the ceiling of a copying queue.
struct ShmCopyChannel {
  ShmRing ring;
  explicit ShmCopyChannel(std::size_t max_size) : ring(max_size) {}
  void send(const std::string& m) { ring.send(m.data(), m.size()); }
  std::size_t recv(std::string& buf) { return ring.recv(buf.data()); }
};

// mpp::Queue<std::string>: standalone, in anonymous shared memory inherited by the child;
// get() returns a new std::string per message.
struct MppQueueChannel {
  mpp::Queue<std::string> q;
  void send(const std::string& m) { q.put(m); }
  std::size_t recv(std::string& buf) {
    buf = q.get();
    return buf.size();
  }
};

// The same queue read with get_view, copying each message into one reused buffer.
struct MppQueueIntoChannel : MppQueueChannel {
  std::size_t recv(std::string& buf) {
    return q.get_view([&](std::string_view v) {
      if (v.size() > buf.size()) throw std::runtime_error("message larger than sent");
      std::memcpy(buf.data(), v.data(), v.size());
      return v.size();
    });
  }
};

// mpp::Pipe: a one-way Connection, bytes in and out with Python's send_bytes and
// recv_bytes_into.
struct MppPipeChannel {
  std::pair<mpp::Connection<std::string>, mpp::Connection<std::string>> ends =
      mpp::Pipe<std::string>(false);
  void send(const std::string& m) { ends.second.send_bytes(m); }
  std::size_t recv(std::string& buf) {
    return ends.first.recv_bytes_into(std::span<char>(buf.data(), buf.size()));
  }
};

// Boost.Interprocess message_queue, opened by name in the child as an unrelated process
// would (a queue object made before fork would also do).
struct BoostChannel {
  std::string name;
  std::size_t max_size;
  std::unique_ptr<boost::interprocess::message_queue> q;
  explicit BoostChannel(std::size_t msg_size) : max_size(msg_size) {
    static int serial = 0;
    name = "mpp-bench-" + std::to_string(getpid()) + "-mq" + std::to_string(serial++);
    boost::interprocess::message_queue::remove(name.c_str());
    // Enough slots for about 16 MiB in flight, at least 16, at most 1024.
    const std::size_t slots = std::clamp<std::size_t>((16u << 20) / msg_size, 16, 1024);
    q = std::make_unique<boost::interprocess::message_queue>(boost::interprocess::create_only,
                                                             name.c_str(), slots, msg_size);
  }
  ~BoostChannel() {
    q.reset();
    boost::interprocess::message_queue::remove(name.c_str());
  }
  void send(const std::string& m) { q->send(m.data(), m.size(), 0); }
  std::size_t recv(std::string& buf) {
    std::size_t got = 0;
    unsigned prio = 0;
    q->receive(buf.data(), buf.size(), got, prio);
    return got;
  }
};

// ---- the two measurements, for any channel --------------------------------------------

void stamp(std::string& m, std::uint64_t seq) { std::memcpy(m.data(), &seq, sizeof seq); }

std::uint64_t seq_of(const std::string& m) {
  std::uint64_t seq;
  std::memcpy(&seq, m.data(), sizeof seq);
  return seq;
}

std::string check(const std::string& m, std::size_t got, std::size_t size, std::uint64_t want) {
  if (got != size) return "a message of " + std::to_string(got) + " bytes, sent " + std::to_string(size);
  if (seq_of(m) != want)
    return "message " + std::to_string(seq_of(m)) + " where " + std::to_string(want) + " was due";
  if (m[size - 1] != 'x') return "a torn message";
  return "";
}

std::string message(std::size_t size) { return std::string(size, 'x'); }

// The forked peer tells the parent it runs, then waits for the go (with the count): fork
// and start-up are outside the timed region.
void ready(int out) { write_pod(out, char(1)); }
std::size_t go(int in) { return read_pod<std::size_t>(in); }
void start(Worker& w, std::size_t count) {
  read_pod<char>(w.from_child);
  write_pod(w.to_child, count);
}

template <class Channel>
RunOut throughput(Channel& ch, std::size_t size, std::size_t count) {
  Worker producer = spawn([&](int in, int out) {
    std::string m = message(size);
    ready(out);
    const std::size_t n = go(in);
    for (std::size_t i = 0; i < n; ++i) {
      stamp(m, i);
      ch.send(m);
    }
  });
  RunOut out;
  std::string buf(size, '\0');
  start(producer, count);
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < count && out.correct; ++i) {
    const std::size_t got = ch.recv(buf);
    out.why = check(buf, got, size, i);
    out.correct = out.why.empty();
  }
  const double wall = seconds_since(t0);
  if (!out.correct) kill(producer.pid, SIGKILL);
  try {
    reap(producer);
  } catch (const std::exception& e) {
    if (out.correct) throw;
  }
  out.figures["wall"] = wall;
  out.figures["msgs"] = double(count) / wall;
  out.figures["mbps"] = double(count) * double(size) / wall / 1e6;
  return out;
}

template <class Channel>
RunOut round_trips(Channel& ping, Channel& pong, std::size_t size, std::size_t count) {
  Worker echo = spawn([&](int in, int out) {
    std::string buf(size, '\0');
    ready(out);
    const std::size_t n = go(in);
    for (std::size_t i = 0; i < n; ++i) {
      if (ping.recv(buf) != size) throw std::runtime_error("echo got a message of another size");
      pong.send(buf);
    }
  });
  RunOut out;
  std::string m = message(size), buf(size, '\0');
  start(echo, count);
  // The first exchange also brings both sides' caches and spin budgets up; it is not timed.
  stamp(m, 0);
  ping.send(m);
  out.why = check(buf, pong.recv(buf), size, 0);
  const auto t0 = Clock::now();
  for (std::size_t i = 1; i < count && out.why.empty(); ++i) {
    stamp(m, i);
    ping.send(m);
    out.why = check(buf, pong.recv(buf), size, i);
  }
  const double wall = seconds_since(t0);
  out.correct = out.why.empty();
  if (!out.correct) kill(echo.pid, SIGKILL);
  try {
    reap(echo);
  } catch (const std::exception& e) {
    if (out.correct) throw;
  }
  out.figures["wall"] = wall;
  out.figures["rtt"] = wall / double(count - 1);
  return out;
}

// ---- the cases -------------------------------------------------------------------------

struct Sizes {
  std::size_t size, count, trips;
};

// Shortest measured run: shorter ones are repeated with more messages (not reported).
constexpr double kMinRunSeconds = 0.2;

// A task whose channels (`Channels`, made by `make`) live from setup to teardown and whose
// runs (`measure(channels, count)`) last at least kMinRunSeconds, growing `count` to do so.
template <class Channels>
Task reused(const Plan& plan, std::size_t ci, std::string variant, std::function<Channels*()> make,
            std::function<RunOut(Channels&, std::size_t)> measure, std::size_t count) {
  auto held = std::make_shared<std::unique_ptr<Channels>>();
  auto n = std::make_shared<std::size_t>(count);
  const bool quick = plan.config().quick;
  Task t = measured(ci, std::move(variant), [=] {
    while (true) {
      RunOut out = measure(**held, *n);
      const double wall = out.figures["wall"];
      if (quick || !out.correct || wall >= kMinRunSeconds) return out;
      *n = std::size_t(double(*n) * std::min(10.0, 1.3 * kMinRunSeconds / std::max(wall, 1e-6))) + 1;
    }
  });
  t.setup = [=] { held->reset(make()); };
  t.teardown = [=] { held->reset(); };
  return t;
}

// The two measurements: Kind::task<Channel>(plan, case, variant, size, count, channel args...).
struct Throughput {
  static constexpr const char* name = "throughput";
  template <class Channel, class... Args>
  static Task task(const Plan& plan, std::size_t ci, std::string variant, std::size_t size, std::size_t count,
                   Args... args) {
    return reused<Channel>(
        plan, ci, std::move(variant), [=] { return new Channel(args...); },
        [=](Channel& ch, std::size_t n) { return throughput(ch, size, n); }, count);
  }
};

struct Latency {
  static constexpr const char* name = "latency";
  template <class Channel, class... Args>
  static Task task(const Plan& plan, std::size_t ci, std::string variant, std::size_t size, std::size_t trips,
                   Args... args) {
    using Both = std::pair<Channel, Channel>;
    return reused<Both>(
        plan, ci, std::move(variant),
        [=] { return new Both(std::piecewise_construct, std::tuple<Args...>(args...), std::tuple<Args...>(args...)); },
        [=](Both& b, std::size_t n) { return round_trips(b.first, b.second, size, n); }, trips);
  }
};

inline constexpr const char* kMppInto = "mpp Queue, into a buffer";
inline constexpr const char* kMppPipe = "mpp Pipe (spins, then blocks)";
inline constexpr const char* kSocketSpin = "socketpair (spins, then blocks)";
inline constexpr const char* kSocketBlock = "socketpair (blocks)";
inline constexpr const char* kShmCopy = "shared-memory copy (2 processes)";

// Every variant of one case: `count` messages (or round trips) of `size` bytes to start with.
template <class Kind>
void add_variants(Plan& plan, std::size_t ci, std::size_t size, std::size_t count) {
  const Config& cfg = plan.config();
  plan.add(Kind::template task<MppQueueChannel>(plan, ci, kMpp, size, count));
  plan.add(Kind::template task<MppQueueIntoChannel>(plan, ci, kMppInto, size, count));
  plan.add(Kind::template task<MppPipeChannel>(plan, ci, kMppPipe, size, count));
  plan.add(Kind::template task<SpinningSocketChannel>(plan, ci, kSocketSpin, size, count));
  plan.add(Kind::template task<SocketChannel>(plan, ci, kSocketBlock, size, count));
  plan.add(Kind::template task<PipeChannel>(plan, ci, kIsolated, size, count));
  plan.add(Kind::template task<ShmCopyChannel>(plan, ci, kShmCopy, size, count, size));
  for (const char* via : {"queue", "pipe"}) {
    const std::vector<std::string> args{"--kind",  Kind::name,           "--bytes",
                                        std::to_string(size), "--count", std::to_string(count),
                                        "--via",   via,       "--min-seconds",
                                        cfg.quick ? "0" : "0.2"};
    plan.add(batched(ci, std::string("python mp ") + (via[0] == 'q' ? "Queue" : "Pipe"),
                     [args, &cfg](int warmup, int reps) {
                       return run_python(cfg, "queues.py", args, warmup, reps);
                     }));
  }
  plan.add(Kind::template task<BoostChannel>(plan, ci, kBoost, size, count, size));
}

void add_cases(Plan& plan, const Sizes& s) {
  const std::string label = human_bytes(double(s.size));
  // Ratios: to mpp and to the isolated pipes; at 1 MiB, MB/s to the two-process copy.
  const bool large = s.size >= (std::size_t(1) << 20);
  {
    Case c;
    c.workload = "queue";
    c.name = label + " messages";
    c.params = {{"kind", "throughput"}, {"bytes", s.size}, {"min_run_seconds", kMinRunSeconds}};
    c.metrics = {
        {"msgs", "msgs", "/s", 1, true, {kMpp, kIsolated}, 0, ""},
        {"mbps", "MB/s", "MB/s", 1, true,
         large ? std::vector<std::string>{kShmCopy} : std::vector<std::string>{kMpp, kIsolated}, 0, ""},
    };
    add_variants<Throughput>(plan, plan.add_case(std::move(c)), s.size, s.count);
  }
  {
    Case c;
    c.workload = "queue";
    c.name = label + " round trip";
    c.params = {{"kind", "latency"}, {"bytes", s.size}, {"min_run_seconds", kMinRunSeconds}};
    c.metrics = {{"rtt", "round trip", "µs", 1e-6, false, {kMpp, kIsolated}, 0, ""}};
    add_variants<Latency>(plan, plan.add_case(std::move(c)), s.size, s.trips);
  }
}

}  // namespace

void add_queues(Plan& plan) {
  if (plan.config().quick) {
    for (std::size_t size : {std::size_t(64), std::size_t(4096), std::size_t(1) << 20})
      add_cases(plan, {size, size < 4096 ? 1000u : 50u, 20});
    return;
  }
  add_cases(plan, {64, 100000, 5000});
  add_cases(plan, {4096, 20000, 2000});
  add_cases(plan, {std::size_t(1) << 20, 200, 100});
}

}  // namespace bench
