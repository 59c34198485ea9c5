#include "mpp/pool.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>

#include "mpp/detail/demangle.hpp"
#include "mpp/detail/os/child.hpp"
#include "mpp/detail/process_self.hpp"

namespace mpp {
namespace detail {
namespace {

// Address space of each worker's task queue and of the result queue (pages are used only
// as messages touch them). A task frame may use at most a quarter of a task queue.
constexpr std::size_t kTaskQueueBytes = std::size_t{64} << 20;
constexpr std::size_t kResultQueueBytes = std::size_t{128} << 20;
// Slots of each queue's ring (128 bytes a slot; larger messages live in the segment's heap).
// A task queue holds a few batches at a time, the result queue a few messages per worker
// (producers wait when it is full), so small rings suffice; a ring's pages are faulted in
// as its slots are used, so a larger one would only cost resident memory.
constexpr std::size_t kTaskRingBytes = std::size_t{16} << 10;
constexpr std::size_t kResultRingBytes = std::size_t{128} << 10;
// Batches: a worker has at most kBatchesInFlight batches sent and not fully answered (one
// running, one queued behind it, so it never waits for the parent between batches); the
// rest wait in the parent's backlog, so apply_async never blocks. A batch holds as many
// tasks as run in about kBatchNanos by the running estimate (at least one, at most
// kMaxBatchTasks and kMaxBatchBytes unless a single task is larger): tiny tasks travel
// hundreds to a message, slow ones one at a time, so batching never costs balance.
constexpr std::size_t kBatchesInFlight = 2;
constexpr double kBatchNanos = 200'000;
constexpr std::size_t kMaxBatchTasks = 1024;
constexpr std::size_t kMaxBatchBytes = std::size_t{256} << 10;
// A worker's unsent results: sent at the end of each batch, when this area is full, or when
// the oldest waited longer than kResultDelay (a batch whose tasks were slower than guessed).
constexpr std::size_t kStagingBytes = std::size_t{256} << 10;
constexpr auto kResultDelay = std::chrono::microseconds(500);
// Records of answered batches kept for reuse: only large ones (a map's chunks), and at most
// this much in all.
constexpr std::size_t kSpareMin = std::size_t{64} << 10;
constexpr std::size_t kSpareMax = std::size_t{16} << 20;
// How often an idle result thread checks that the spawner is alive.
constexpr auto kSpawnerCheck = std::chrono::milliseconds(250);

struct Command {
  char op;  // 'R': replace the worker of `slot`; 'K': kill every worker and exit
  char pad[3];
  std::uint32_t slot;
};

// A queue of its own anonymous segment (shared with the processes forked later).
QueueCore make_queue(std::size_t capacity, std::size_t ring_bytes, const char* value_type) {
  return QueueCore::named(Segment::anonymous(capacity), "", ObjectKind::queue, 0, ring_bytes, value_type);
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

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

// A result record: u32 size | ResultHeader | payload; seal_record() sets the size once the
// payload is appended.
std::string record_of(const ResultHeader& h) {
  std::string out(sizeof(std::uint32_t), '\0');
  append_raw(out, &h, sizeof h);
  return out;
}

void seal_record(std::string& r) {
  auto n = static_cast<std::uint32_t>(r.size() - sizeof(std::uint32_t));
  std::memcpy(r.data(), &n, sizeof n);
}

// A task record again, from the frame a batch holds.
std::string task_record(ByteView frame) {
  std::string r(sizeof(std::uint32_t), '\0');
  r += as_chars(frame);
  seal_record(r);
  return r;
}

// Calls visit(bytes) for each record of a message (u32 size | bytes); stops at a record
// that runs past the end (the bytes are checked, never trusted).
template <class Visit>
void for_each_record(ByteView m, Visit&& visit) {
  std::size_t off = 0;
  while (m.size() - off >= sizeof(std::uint32_t)) {
    std::uint32_t n;
    std::memcpy(&n, m.data() + off, sizeof n);
    off += sizeof n;
    if (n > m.size() - off) return;
    visit(m.subspan(off, n));
    off += n;
  }
}

void copy_message(void* ctx, ByteView bytes) {
  static_cast<std::string*>(ctx)->assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

}  // namespace

PoolCore::PoolCore(int processes, std::function<void()> initializer, std::size_t maxtasksperchild)
    : processes_(processes), initializer_(std::move(initializer)),
      maxtasksperchild_(maxtasksperchild), owner_pid_(::getpid()) {
  log_task_ns_ = std::log(kBatchNanos);  // unknown yet: one task per batch until results tell
  slots_.resize(static_cast<std::size_t>(processes));
  records_ = Segment::anonymous(static_cast<std::size_t>(processes) * (kStagingBytes + 4096) + (std::size_t{1} << 20));
  for (auto& s : slots_) {
    s.tasks = std::make_unique<QueueCore>(make_queue(kTaskQueueBytes, kTaskRingBytes, "mpp::Pool task"));
    s.record = new (records_->allocate(sizeof(WorkerRecord), 64)) WorkerRecord;
    s.record->staging = static_cast<std::byte*>(records_->allocate(kStagingBytes, 64));
  }
  results_ = std::make_unique<QueueCore>(make_queue(kResultQueueBytes, kResultRingBytes, "mpp::Pool result"));
  os::PipeFds command = os::make_pipe("starting a Pool");
#ifdef __GLIBC__
  // fork() copies the page tables of the parent's private memory, and the spawner and each
  // worker tear their copy down when they exit: a pool's start and stop cost grows with the
  // parent's resident memory (20 MB made stop take ~3 ms). Memory the allocator holds free
  // (often most of it, after a big container was freed) goes back to the system first.
  ::malloc_trim(0);
#endif
  os::flush_std_streams();  // or buffered output would be printed again by the children
  pid_t pid = os::fork_child(true);
  if (pid < 0) throw_os_error(errno, "fork (starting a Pool's spawner process)");
  if (pid == 0) {
    command.write.reset();
    command_fd_ = std::move(command.read);
    spawner_main();
  }
  command_fd_ = std::move(command.write);
  spawner_pid_ = pid;
  spawner_pidfd_ = os::pidfd_open(pid);
  result_thread_ = std::thread([this] { result_loop(); });
}

PoolCore::~PoolCore() {
  if (::getpid() != owner_pid_) return;  // a fork of the owner: not ours to stop
  shutdown(false);
}

// ---- the spawner: single-threaded, forks every worker ----

void PoolCore::spawner_main() {
  const ProcessInfo owner = current_process();
  become_forked_child("PoolSpawner", true, owner);
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  ::signal(SIGCHLD, SIG_DFL);  // an ignored SIGCHLD would reap the workers behind our back
  ::sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) ::_exit(1);
  std::vector<pid_t> pids(static_cast<std::size_t>(processes_), 0);
  int spawned = 0;

  auto post = [&](std::string frame) {
    seal_record(frame);
    try {
      results_->put(as_bytes(frame), std::nullopt);
    } catch (...) {
      ::_exit(1);
    }
  };
  auto spawn = [&](std::uint32_t slot) {
    ++spawned;
    pid_t p = os::fork_child(true);
    if (p == 0) {
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      ::close(sfd);
      command_fd_.reset();
      become_forked_child("PoolWorker-" + std::to_string(spawned), true, owner);
      worker_main(static_cast<int>(slot));
    }
    if (p > 0) {
      pids[slot] = p;
    } else {
      std::string f = record_of(ResultHeader{0, ResultKind::init_failed, slot, 0, 0});
      append_error(f, "mpp::OSError", std::string("fork of a pool worker failed: ") + strerror(errno));
      post(f);
    }
  };

  for (std::uint32_t s = 0; s < pids.size(); ++s) spawn(s);
  for (;;) {
    pollfd fds[2] = {{command_fd_.get(), POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
      }
      int status = 0;
      pid_t p;
      while ((p = ::waitpid(-1, &status, WNOHANG)) > 0) {
        auto it = std::find(pids.begin(), pids.end(), p);
        if (it == pids.end()) continue;
        *it = 0;
        post(record_of(ResultHeader{0, ResultKind::died, static_cast<std::uint32_t>(it - pids.begin()), p, status}));
      }
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      Command c{};
      ssize_t n = ::read(command_fd_.get(), &c, sizeof c);
      if (n < 0 && errno == EINTR) continue;
      if (n == static_cast<ssize_t>(sizeof c) && c.op == 'R') {
        if (c.slot < pids.size() && pids[c.slot] == 0) spawn(c.slot);
        continue;
      }
      break;  // 'K', or the owner closed its end (it is gone)
    }
  }
  for (pid_t p : pids) {
    if (p > 0) ::kill(p, SIGKILL);
  }
  for (pid_t p : pids) {
    if (p > 0) {
      while (::waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  ::_exit(0);
}

// ---- a worker ----

void PoolCore::worker_main(int slot) {
  const auto uslot = static_cast<std::uint32_t>(slot);
  const pid_t me = ::getpid();
  WorkerRecord& rec = *slots_[uslot].record;
  rec.running.store(0, std::memory_order_relaxed);
  rec.staged.store(0, std::memory_order_release);
  if (initializer_) {
    try {
      initializer_();
    } catch (...) {
      std::string f = record_of(ResultHeader{0, ResultKind::init_failed, uslot, me, 0});
      append_error(f, current_exception_type_name(), current_exception_what());
      seal_record(f);
      try {
        results_->put(as_bytes(f), std::nullopt);
      } catch (...) {
      }
      os::flush_std_streams();
      ::_exit(1);
    }
  }
  QueueCore& tasks = *slots_[uslot].tasks;
  std::string in, out;
  std::size_t done = 0;
  std::size_t staged = 0;
  Clock::time_point first_staged{};
  // Results are staged in shared memory before they are sent, so that the parent finds those
  // of a worker that died before sending them. Sending is one put of the whole area; a death
  // after the put and before `staged` is reset only makes the parent see them twice, and it
  // takes each task's outcome once.
  auto send_staged = [&] {
    if (staged == 0) return;
    os::flush_std_streams();  // the tasks' output comes before their callbacks'
    results_->put(ByteView(rec.staging, staged), std::nullopt);
    staged = 0;
    rec.staged.store(0, std::memory_order_release);
  };
  auto stage = [&](const std::string& r, Clock::time_point now) {
    if (staged + r.size() > kStagingBytes) send_staged();
    if (r.size() > kStagingBytes) {
      os::flush_std_streams();
      results_->put(as_bytes(r), std::nullopt);
      return;
    }
    if (staged == 0) first_staged = now;
    std::memcpy(rec.staging + staged, r.data(), r.size());
    staged += r.size();
    rec.staged.store(staged, std::memory_order_release);
  };
  for (;;) {
    tasks.get(copy_message, &in, std::nullopt);
    Clock::time_point started = Clock::now();
    for_each_record(as_bytes(in), [&](ByteView frame) {
      TaskHeader th{};
      ResultHeader rh{0, ResultKind::ok, uslot, me, 0};
      out.assign(sizeof(std::uint32_t) + sizeof rh, '\0');
      try {
        if (frame.size() < sizeof th) throw DecodeError("a pool task frame is truncated");
        std::memcpy(&th, frame.data(), sizeof th);
        rh.task_id = th.task_id;
        // Before the task starts: if this worker dies now, this task is the one it ran.
        rec.running.store(th.task_id, std::memory_order_release);
        if (frame.size() < sizeof th + th.callable_size) throw DecodeError("a pool task frame is truncated");
        th.trampoline(frame.data() + sizeof th,
                      frame.subspan(sizeof th + th.callable_size), out);
      } catch (...) {
        rh.kind = ResultKind::error;
        out.resize(sizeof(std::uint32_t) + sizeof rh);
        append_error(out, current_exception_type_name(), current_exception_what());
      }
      Clock::time_point now = Clock::now();
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now - started).count();
      started = now;
      rh.status = static_cast<std::int32_t>(std::min<long long>(ns, INT32_MAX));
      std::memcpy(out.data() + sizeof(std::uint32_t), &rh, sizeof rh);
      if (out.size() > kResultQueueBytes / 4) {
        rh.kind = ResultKind::error;
        const std::size_t bytes = out.size();
        out.resize(sizeof(std::uint32_t) + sizeof rh);
        std::memcpy(out.data() + sizeof(std::uint32_t), &rh, sizeof rh);
        append_error(out, "mpp::ValueError",
                     "the task's result of " + std::to_string(bytes) +
                         " bytes is too large to send back (the limit is " +
                         std::to_string(kResultQueueBytes / 4) + "); return less per task");
      }
      seal_record(out);
      stage(out, now);
      if (maxtasksperchild_ != 0 && ++done >= maxtasksperchild_) {
        // The rest of the batch was not started: the parent sends it to another worker.
        send_staged();
        rec.running.store(0, std::memory_order_release);
        ::_exit(0);
      }
      if (now - first_staged > kResultDelay && staged != 0) send_staged();
    });
    send_staged();
  }
}

// ---- the parent ----

std::size_t PoolCore::batch_limit_locked() const {
  double n = kBatchNanos / std::exp(log_task_ns_);
  return n >= static_cast<double>(kMaxBatchTasks) ? kMaxBatchTasks : std::max<std::size_t>(1, static_cast<std::size_t>(n));
}

void PoolCore::submit(std::string frame, std::shared_ptr<TaskSink> sink, std::uint64_t tag) {
  if (frame.size() < sizeof(std::uint32_t) + sizeof(TaskHeader)) throw ValueError("a pool task record is truncated");
  if (frame.size() > kTaskQueueBytes / 4) {
    throw ValueError("a pool task of " + std::to_string(frame.size()) +
                     " bytes is too large (the limit is " + std::to_string(kTaskQueueBytes / 4) +
                     "); pass a smaller chunksize or smaller arguments");
  }
  std::lock_guard lock(m_);
  if (!broken_.empty()) throw BrokenPool(broken_);
  if (state_ != State::running) {
    throw BrokenPool(state_ == State::closed ? "the pool is closed: it takes no new tasks"
                                             : "the pool was terminated: it takes no new tasks");
  }
  const std::uint64_t id = next_id_++;
  seal_record(frame);
  std::memcpy(frame.data() + sizeof(std::uint32_t) + offsetof(TaskHeader, task_id), &id, sizeof id);
  if (pending_.empty()) pending_base_ = id;
  pending_.push_back(Pending{std::move(sink), tag});
  ++unfinished_;
  backlog_.push_back(Task{id, std::move(frame)});
  refill_locked();
}

// Sends batches from the backlog to workers with fewer than kBatchesInFlight batches.
void PoolCore::refill_locked() {
  while (!backlog_.empty()) {
    std::size_t best = 0;
    for (std::size_t i = 1; i < slots_.size(); ++i) {
      if (slots_[i].batches.size() < slots_[best].batches.size()) best = i;
    }
    Slot& s = slots_[best];
    if (s.batches.size() >= kBatchesInFlight) return;
    const std::size_t limit = batch_limit_locked();
    Batch b;
    std::size_t n = 0;
    // Backlog entries are whole records: a batch of one is its record as it is.
    auto it = backlog_.begin();
    for (; it != backlog_.end() && n < limit; ++it, ++n) {
      if (n > 0 && b.bytes.size() + it->frame.size() > kMaxBatchBytes) break;
    }
    if (n == 1) {
      b.bytes = std::move(backlog_.front().frame);
      b.ids.push_back(backlog_.front().id);
    } else {
      std::size_t bytes = 0;
      for (auto j = backlog_.begin(); j != it; ++j) bytes += j->frame.size();
      b.bytes.reserve(bytes);
      b.ids.reserve(n);
      for (auto j = backlog_.begin(); j != it; ++j) {
        b.bytes += j->frame;
        b.ids.push_back(j->id);
      }
    }
    try {
      s.tasks->put(as_bytes(b.bytes), Clock::now());
    } catch (const Full&) {
      if (n == 1) backlog_.front().frame = std::move(b.bytes);
      return;  // no room now: the backlog is sent as results come back
    }
    backlog_.erase(backlog_.begin(), backlog_.begin() + static_cast<std::ptrdiff_t>(n));
    s.batches.push_back(std::move(b));
  }
}

// An idle worker takes the oldest batch still queued for another one.
void PoolCore::steal_locked(std::size_t idle) {
  std::size_t victim = idle;
  std::size_t most = 0;
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    std::size_t q = i == idle ? 0 : slots_[i].tasks->qsize();
    if (q > most) {
      most = q;
      victim = i;
    }
  }
  if (victim == idle) return;
  std::string bytes;
  try {
    slots_[victim].tasks->get(copy_message, &bytes, Clock::now());
  } catch (const Empty&) {
    return;
  }
  // Which batch it is: the one starting with the task the message starts with.
  std::uint64_t first = 0;
  for_each_record(as_bytes(bytes), [&](ByteView frame) {
    if (first == 0 && frame.size() >= sizeof(TaskHeader)) std::memcpy(&first, frame.data() + offsetof(TaskHeader, task_id), sizeof first);
  });
  auto& vb = slots_[victim].batches;
  auto it = std::find_if(vb.begin(), vb.end(), [&](const Batch& b) { return !b.ids.empty() && b.ids.front() == first; });
  if (it == vb.end()) return;  // cannot happen: every queued message is a batch of the slot
  Batch b = std::move(*it);
  vb.erase(it);
  try {
    slots_[idle].tasks->put(as_bytes(b.bytes), Clock::now());
    slots_[idle].batches.push_back(std::move(b));
  } catch (const Full&) {
    std::vector<Task> back;
    std::size_t i = 0;
    for_each_record(as_bytes(b.bytes), [&](ByteView frame) { back.push_back(Task{b.ids[i++], task_record(frame)}); });
    backlog_.insert(backlog_.begin(), std::make_move_iterator(back.begin()), std::make_move_iterator(back.end()));
  }
}

std::string PoolCore::take_buffer(std::size_t bytes) {
  if (bytes >= kSpareMin) {
    std::lock_guard lock(m_);
    for (auto it = spare_.begin(); it != spare_.end(); ++it) {
      if (it->capacity() >= bytes) {
        std::string b = std::move(*it);
        spare_.erase(it);
        spare_bytes_ -= b.capacity();
        b.clear();
        return b;
      }
    }
  }
  std::string b;
  b.reserve(bytes);
  return b;
}

void PoolCore::finish_all(Done& done) {
  for (auto& [p, o] : done) {
    try {
      p.sink->complete(p.tag, o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mpp::Pool: a callback threw %s: %s\n", current_exception_type_name().c_str(), e.what());
    } catch (...) {
      std::fprintf(stderr, "mpp::Pool: a callback threw %s\n", current_exception_type_name().c_str());
    }
    p.sink.reset();  // the call's state goes now, not with the next message
  }
  if (done.empty()) return;
  std::lock_guard lock(m_);
  unfinished_ -= done.size();
  if (unfinished_ == 0) all_done_.notify_all();
  done.clear();
}

// One task's result: its completion moves to `done`, its batch is answered up to it.
PoolCore::Pending* PoolCore::pending_locked(std::uint64_t id) {
  if (id < pending_base_ || id - pending_base_ >= pending_.size()) return nullptr;
  Pending& p = pending_[id - pending_base_];
  return p.sink ? &p : nullptr;
}

void PoolCore::take_pending_locked(Pending& p, Outcome o, Done& done) {
  done.emplace_back(std::move(p), std::move(o));
  p.sink.reset();
  while (!pending_.empty() && !pending_.front().sink) {
    pending_.pop_front();
    ++pending_base_;
  }
}

void PoolCore::take_result_locked(const ResultHeader& h, ByteView payload, Done& done) {
  Pending* p = pending_locked(h.task_id);
  if (!p) return;  // failed already (the pool broke), or seen twice
  Outcome o;
  if (h.kind == ResultKind::ok) {
    o.ok = true;
    o.payload = payload;
  } else {
    try {
      auto [type, message] = parse_error(payload);
      o.error = std::make_exception_ptr(RemoteError(std::move(type), std::move(message)));
    } catch (...) {
      o.error = std::current_exception();
    }
  }
  take_pending_locked(*p, std::move(o), done);
  // In logarithms: one task that blocked for a while (waiting for input, say) moves the
  // estimate by a factor, not to its own length, and tiny tasks go on travelling in batches.
  log_task_ns_ += (std::log(static_cast<double>(std::max(h.status, 1))) - log_task_ns_) / 8;
  if (h.slot >= slots_.size()) return;
  // A worker answers its batches in order, so this is normally the next id of the oldest.
  auto& bs = slots_[h.slot].batches;
  for (auto b = bs.begin(); b != bs.end(); ++b) {
    if (b->answered < b->ids.size() && b->ids[b->answered] == h.task_id) {
      if (++b->answered == b->ids.size()) {
        const std::size_t cap = b->bytes.capacity();
        if (cap >= kSpareMin && cap <= kSpareMax - spare_bytes_) {
          spare_bytes_ += cap;
          spare_.push_back(std::move(b->bytes));
        }
        bs.erase(b);
      }
      return;
    }
  }
}

// The result records of one message (from the result queue, or a dead worker's staging
// area). `only_slot` (when < slots_.size()) accepts only that worker's results.
void PoolCore::take_results_locked(ByteView message, Done& done, std::size_t only_slot) {
  for_each_record(message, [&](ByteView r) {
    if (r.size() < sizeof(ResultHeader)) return;
    ResultHeader h;
    std::memcpy(&h, r.data(), sizeof h);
    if (h.kind != ResultKind::ok && h.kind != ResultKind::error) return;
    if (only_slot < slots_.size() && h.slot != only_slot) return;
    take_result_locked(h, r.subspan(sizeof h), done);
  });
}

void PoolCore::on_worker_died(const ResultHeader& h) {
  Done done;
  std::string staging;
  {
    std::lock_guard lock(m_);
    if (h.slot >= slots_.size()) return;
    Slot& s = slots_[h.slot];
    // Results it computed and had not sent are in its staging area.
    std::size_t staged = std::min<std::size_t>(s.record->staged.load(std::memory_order_acquire), kStagingBytes);
    staging.assign(reinterpret_cast<const char*>(s.record->staging), staged);
    take_results_locked(as_bytes(staging), done, h.slot);
    // It takes its batches in order, one at a time, and runs a batch's tasks in order. Of
    // its batches, those no longer queued (qsize: no one else takes from that queue until
    // the replacement exists) were taken; in them, every task without a result was either
    // the one it was running (`running`: that task fails) or not started (sent again).
    // Batches still queued stay for the replacement.
    const std::uint64_t running = s.record->running.load(std::memory_order_acquire);
    std::size_t queued = s.tasks->qsize();
    std::size_t taken = s.batches.size() > queued ? s.batches.size() - queued : 0;
    std::vector<Task> again;
    const std::string msg = "pool worker pid " + std::to_string(h.pid) + " " + describe_status(h.status) +
                            " while running this task; the pool replaced it and goes on";
    for (std::size_t k = 0; k < taken; ++k) {
      Batch& b = s.batches.front();
      std::size_t i = 0;
      for_each_record(as_bytes(b.bytes), [&](ByteView frame) {
        const std::uint64_t id = b.ids[i++];
        if (i <= b.answered) return;
        Pending* p = pending_locked(id);
        if (!p) return;
        if (id == running) {
          take_pending_locked(*p, Outcome{false, {}, std::make_exception_ptr(WorkerLost(msg))}, done);
        } else {
          again.push_back(Task{id, task_record(frame)});
        }
      });
      s.batches.pop_front();
    }
    backlog_.insert(backlog_.begin(), std::make_move_iterator(again.begin()), std::make_move_iterator(again.end()));
    if (!torn_down_ && broken_.empty()) {
      Command c{'R', {}, h.slot};
      if (::write(command_fd_.get(), &c, sizeof c) != static_cast<ssize_t>(sizeof c)) {
        // The spawner is gone; the result loop notices and breaks the pool.
      }
      refill_locked();
    }
  }
  finish_all(done);
}

void PoolCore::break_locked(const std::string& reason, std::vector<Pending>& failed) {
  if (broken_.empty()) broken_ = reason;
  for (auto& p : pending_) {
    if (p.sink) failed.push_back(std::move(p));
  }
  pending_.clear();
  backlog_.clear();
  for (auto& s : slots_) s.batches.clear();
}

// The result queue's consumer for result messages: takes the outcomes in place, in the
// queue (no copy of the message), and runs their completions. Other messages are copied out
// for result_loop.
namespace {
struct ResultTaker {
  PoolCore* core;
  std::string* other;
};
}  // namespace

void PoolCore::take_message(void* ctx, ByteView m) {
  auto& t = *static_cast<ResultTaker*>(ctx);
  PoolCore& self = *t.core;
  ResultHeader h{};
  if (m.size() >= sizeof(std::uint32_t) + sizeof h) std::memcpy(&h, m.data() + sizeof(std::uint32_t), sizeof h);
  if (h.kind != ResultKind::ok && h.kind != ResultKind::error) {
    t.other->assign(as_chars(m));
    return;
  }
  t.other->clear();
  Done done;
  {
    std::lock_guard lock(self.m_);
    self.take_results_locked(m, done, self.slots_.size());
    self.refill_locked();
    if (h.slot < self.slots_.size() && self.slots_[h.slot].batches.empty() && self.backlog_.empty()) {
      self.steal_locked(h.slot);
    }
  }
  self.finish_all(done);
}

void PoolCore::result_loop() {
  std::string buf;
  Done done;
  ResultTaker taker{this, &buf};
  auto fail_all = [&](const std::string& reason, std::vector<Pending>& failed) {
    for (auto& c : failed) done.emplace_back(std::move(c), Outcome{false, {}, std::make_exception_ptr(BrokenPool(reason))});
    finish_all(done);
  };
  for (;;) {
    try {
      results_->get(&PoolCore::take_message, &taker, Clock::now() + kSpawnerCheck);
    } catch (const Empty&) {
      pollfd p{spawner_pidfd_.get(), POLLIN, 0};
      if (spawner_pidfd_ && ::poll(&p, 1, 0) == 1) {
        std::vector<Pending> failed;
        std::string reason;
        {
          std::lock_guard lock(m_);
          if (torn_down_) continue;
          break_locked("the pool's spawner process (pid " + std::to_string(spawner_pid_) +
                           ") died, and its workers with it; make a new Pool",
                       failed);
          reason = broken_;
        }
        fail_all(reason, failed);
      }
      continue;
    }
    if (buf.empty()) continue;  // results, taken in place
    // Worker messages are results only; the spawner's and the parent's carry one record.
    ResultHeader h{};
    if (buf.size() >= sizeof(std::uint32_t) + sizeof h) std::memcpy(&h, buf.data() + sizeof(std::uint32_t), sizeof h);
    switch (h.kind) {
      case ResultKind::quit:
        return;
      case ResultKind::died:
        on_worker_died(h);
        break;
      case ResultKind::init_failed: {
        ByteView payload = as_bytes(buf).subspan(sizeof(std::uint32_t) + sizeof h);
        std::string reason;
        try {
          auto [type, message] = parse_error(payload);
          reason = "the pool's initializer failed in worker pid " + std::to_string(h.pid) + ": " + type +
                   ": " + message;
        } catch (const std::exception& e) {
          reason = std::string("the pool's initializer failed: ") + e.what();
        }
        std::vector<Pending> failed;
        {
          std::lock_guard lock(m_);
          break_locked(reason, failed);
        }
        fail_all(reason, failed);
        break;
      }
      default:
        break;
    }
  }
}

void PoolCore::post_quit() {
  std::string r = record_of(ResultHeader{0, ResultKind::quit, 0, 0, 0});
  seal_record(r);
  results_->put(as_bytes(r), std::nullopt);
}

void PoolCore::close() {
  std::lock_guard lock(m_);
  if (state_ == State::running) state_ = State::closed;
}

void PoolCore::terminate() {
  if (::getpid() != owner_pid_) throw ProcessError("terminate(): this Pool belongs to another process");
  if (on_result_thread()) throw ValueError("terminate() cannot be called from a pool callback");
  shutdown(false);
}

void PoolCore::join() {
  if (::getpid() != owner_pid_) throw ProcessError("join(): this Pool belongs to another process");
  {
    std::unique_lock lock(m_);
    if (state_ == State::running) throw ValueError("join(): call close() or terminate() first");
    if (on_result_thread()) throw ValueError("join() cannot be called from a pool callback");
    all_done_.wait(lock, [&] { return unfinished_ == 0; });
  }
  shutdown(true);
}

void PoolCore::shutdown(bool graceful) {
  std::vector<Pending> failed;
  {
    std::lock_guard lock(m_);
    if (torn_down_) return;
    torn_down_ = true;
    state_ = State::terminated;
    if (!graceful) break_locked("the pool was terminated before this task finished", failed);
  }
  Done done;
  for (auto& c : failed) done.emplace_back(std::move(c), Outcome{false, {}, std::make_exception_ptr(BrokenPool(broken_))});
  finish_all(done);
  post_quit();  // the result thread ends while the processes do
  // The spawner kills its workers (idle after a graceful join), reaps them and exits.
  Command k{'K', {}, 0};
  if (::write(command_fd_.get(), &k, sizeof k) < 0) {
    // Already gone: the waitpid below reaps it all the same.
  }
  command_fd_.reset();
  while (::waitpid(spawner_pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (result_thread_.joinable()) result_thread_.join();
}

}  // namespace detail

Pool::Pool(int processes, PoolOptions options) {
  if (processes < 0) throw ValueError("Pool: the number of processes must be at least 1, not " + std::to_string(processes));
  if (processes == 0) processes = cpu_count();
  core_ = std::make_shared<detail::PoolCore>(processes, std::move(options.initializer), options.maxtasksperchild);
}

Pool::~Pool() = default;

}  // namespace mpp
