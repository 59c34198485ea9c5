// Workload 3: a producer process sends messages of 64 B, 4 KiB and 1 MiB to a consumer
// process. Throughput: count messages from the producer's fork to the last message read
// (msgs/s, MB/s). Latency: a ping-pong of one message each way, round trip time averaged
// over a run. Every message carries its sequence number, checked in order by the reader,
// and its length is checked too: lost, duplicated, torn or reordered messages are errors.
#include <fcntl.h>
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "mpp/pipe.hpp"
#include "mpp/queue.hpp"
#include "workloads.hpp"

namespace bench {
namespace {

// ---- channels: one direction of one variant, made before fork, used on both sides ------

// Isolated: a raw pipe carrying a length, then the bytes.
struct PipeChannel {
  int fd[2];
  PipeChannel() {
    if (pipe(fd) != 0) throw std::runtime_error("pipe");
    fcntl(fd[1], F_SETPIPE_SZ, 1 << 20);  // the largest unprivileged pipe: fewer wake-ups
  }
  ~PipeChannel() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  void send(const std::string& m) {
    std::uint64_t n = m.size();
    iovec iov[2] = {{&n, sizeof n}, {const_cast<char*>(m.data()), m.size()}};
    std::size_t done = 0, total = sizeof n + m.size();
    while (done < total) {  // a pipe write of more than PIPE_BUF bytes may be partial
      ssize_t k = ::writev(fd[1], iov, 2);
      if (k < 0) throw std::runtime_error("writev to pipe failed");
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
    const auto n = read_pod<std::uint64_t>(fd[0]);
    if (n > buf.size()) throw std::runtime_error("message larger than sent");
    read_all(fd[0], buf.data(), n);
    return n;
  }
};

// mpp::Queue<std::string>: standalone, in anonymous shared memory inherited by the child.
struct MppQueueChannel {
  mpp::Queue<std::string> q;
  void send(const std::string& m) { q.put(m); }
  std::size_t recv(std::string& buf) {
    buf = q.get();
    return buf.size();
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

template <class Channel>
RunOut throughput(Channel& ch, std::size_t size, std::size_t count) {
  const auto start = Clock::now();
  Worker producer = spawn([&](int, int) {
    std::string m = message(size);
    for (std::size_t i = 0; i < count; ++i) {
      stamp(m, i);
      ch.send(m);
    }
  });
  RunOut out;
  std::string buf(size, '\0');
  for (std::size_t i = 0; i < count && out.correct; ++i) {
    const std::size_t got = ch.recv(buf);
    out.why = check(buf, got, size, i);
    out.correct = out.why.empty();
  }
  const double wall = seconds_since(start);
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
  Worker echo = spawn([&](int, int) {
    std::string buf(size, '\0');
    for (std::size_t i = 0; i < count; ++i) {
      if (ping.recv(buf) != size) throw std::runtime_error("echo got a message of another size");
      pong.send(buf);
    }
  });
  RunOut out;
  std::string m = message(size), buf(size, '\0');
  // The first exchange also waits for the child to start; it is not timed.
  stamp(m, 0);
  ping.send(m);
  out.why = check(buf, pong.recv(buf), size, 0);
  const auto start = Clock::now();
  for (std::size_t i = 1; i < count && out.why.empty(); ++i) {
    stamp(m, i);
    ping.send(m);
    out.why = check(buf, pong.recv(buf), size, i);
  }
  const double wall = seconds_since(start);
  out.correct = out.why.empty();
  if (!out.correct) kill(echo.pid, SIGKILL);
  try {
    reap(echo);
  } catch (const std::exception& e) {
    if (out.correct) throw;
  }
  out.figures["rtt"] = wall / double(count - 1);
  return out;
}

// ---- the cases -------------------------------------------------------------------------

struct Sizes {
  std::size_t size, count, trips;
};

// The two measurements as factories: Kind::of<Channel>(size, count, channel args...).
struct Throughput {
  static constexpr const char* name = "throughput";
  template <class Channel, class... Args>
  static std::function<RunOut()> of(std::size_t size, std::size_t count, Args... args) {
    return [=] {
      Channel ch(args...);
      return throughput(ch, size, count);
    };
  }
};

struct Latency {
  static constexpr const char* name = "latency";
  template <class Channel, class... Args>
  static std::function<RunOut()> of(std::size_t size, std::size_t trips, Args... args) {
    return [=] {
      Channel a(args...), b(args...);
      return round_trips(a, b, size, trips);
    };
  }
};

// Every variant of one case: `count` messages (or round trips) of `size` bytes.
template <class Kind>
void add_variants(Plan& plan, std::size_t ci, std::size_t size, std::size_t count) {
  const Config& cfg = plan.config();
  plan.add(measured(ci, kMpp, Kind::template of<MppQueueChannel>(size, count)));
  plan.add(measured(ci, "mpp Pipe", Kind::template of<MppPipeChannel>(size, count)));
  plan.add(measured(ci, kIsolated, Kind::template of<PipeChannel>(size, count)));
  for (const char* via : {"queue", "pipe"}) {
    const std::vector<std::string> args{"--kind",  Kind::name,           "--bytes",
                                        std::to_string(size), "--count", std::to_string(count),
                                        "--via",   via};
    plan.add(batched(ci, std::string("python mp ") + (via[0] == 'q' ? "Queue" : "Pipe"),
                     [args, &cfg](int warmup, int reps) {
                       return run_python(cfg, "queues.py", args, warmup, reps);
                     }));
  }
  plan.add(measured(ci, kBoost, Kind::template of<BoostChannel>(size, count, size)));
}

void add_cases(Plan& plan, const Sizes& s) {
  const std::string label = human_bytes(double(s.size));
  {
    Case c;
    c.workload = "queue";
    c.name = label + " × " + std::to_string(s.count);
    c.params = {{"kind", "throughput"}, {"bytes", s.size}, {"messages", s.count}};
    c.metrics = {
        {"msgs", "msgs", "/s", 1, true, {kMpp, kIsolated}, 0, ""},
        {"mbps", "MB/s", "MB/s", 1, true, {kMpp, kIsolated}, 0, ""},
    };
    add_variants<Throughput>(plan, plan.add_case(std::move(c)), s.size, s.count);
  }
  {
    Case c;
    c.workload = "queue";
    c.name = label + " round trip";
    c.params = {{"kind", "latency"}, {"bytes", s.size}, {"round_trips", s.trips}};
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
