// The Pool's dispatch, in the parent: tasks wait in a backlog and go to the workers in
// batches sized by the running estimate of a task's length; an idle worker steals a batch
// still queued for another.
#include "mpp/detail/pool_core.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "protocol.hpp"

namespace mpp::detail {

using namespace pool;

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

}  // namespace mpp::detail
