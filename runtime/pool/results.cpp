// The Pool's result thread, in the parent: takes the workers' results (in place, in the result
// queue), runs the tasks' completions, turns a worker's death into one failed task and the
// rest sent again, and breaks the pool when its spawner or an initializer fails.
#include "mpp/detail/pool_core.hpp"

#include <poll.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "mpp/detail/demangle.hpp"

#include "protocol.hpp"

namespace mpp::detail {

using namespace pool;

namespace {

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (abbrev ? std::string(" (SIG") + abbrev + ")" : "");
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

}  // namespace

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

}  // namespace mpp::detail
