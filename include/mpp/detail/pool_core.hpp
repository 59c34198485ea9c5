// The untyped engine under mpp::Pool: the spawner and the workers, the shared-memory queues
// between them, the result thread, dispatch and the bookkeeping that turns a dead worker
// into one failed task. The design: docs/design/pool.md.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/os/fd.hpp"
#include "mpp/detail/pool_task.hpp"
#include "mpp/detail/queue_core.hpp"
#include "mpp/detail/segment.hpp"

namespace mpp::detail {

// How a task ended, as the result thread hands it to the task's completion.
struct Outcome {
  bool ok = false;
  ByteView payload;           // ok: the encoded results (valid during the call only)
  std::exception_ptr error;   // else: RemoteError, WorkerLost or BrokenPool
};

// Receives the outcomes of the tasks of one call (an apply_async, a map): `tag` is what the
// call passed to submit() for that task. complete() is called exactly once per task, on the
// result thread (or on the thread that terminates the pool, with a BrokenPool error). It
// runs user callbacks: what it throws is reported on stderr and otherwise ignored.
class TaskSink {
 public:
  virtual ~TaskSink() = default;
  virtual void complete(std::uint64_t tag, const Outcome& outcome) = 0;
};

class PoolCore {
 public:
  // Forks the spawner, which forks `processes` workers; then starts the result thread.
  PoolCore(int processes, std::function<void()> initializer, std::size_t maxtasksperchild);
  ~PoolCore();  // terminate()
  PoolCore(const PoolCore&) = delete;
  PoolCore& operator=(const PoolCore&) = delete;

  // Queues a task record (begin_task + input). Throws BrokenPool when the pool is closed,
  // terminated or broken; ValueError when the frame can never fit in a queue.
  void submit(std::string frame, std::shared_ptr<TaskSink> sink, std::uint64_t tag);

  // A buffer to build a task record of about `bytes` in: the record of an answered batch
  // when one is spare (its pages are mapped already: a map's chunks cost no page faults
  // after the first call), else a fresh one. Thread-safe.
  std::string take_buffer(std::size_t bytes);

  void close();
  void terminate();
  void join();

  int processes() const noexcept { return processes_; }
  bool on_result_thread() const noexcept { return std::this_thread::get_id() == result_thread_.get_id(); }

 private:
  // What a worker shares with the parent beyond its queues: written by the worker only,
  // read by the parent once the worker is dead, to account for its batch exactly.
  struct WorkerRecord {
    std::atomic<std::uint64_t> running{0};  // id of the task it runs or last ran; 0: none
    std::atomic<std::uint64_t> staged{0};   // bytes of result records in `staging` not yet sent
    std::byte* staging = nullptr;           // kStagingBytes in the pool's segment
  };
  // Tasks sent to one worker as one queue message: records u32 size | task frame.
  struct Batch {
    std::string bytes;
    std::vector<std::uint64_t> ids;
    std::size_t answered = 0;  // ids[0, answered) have their results
  };
  struct Slot {
    std::unique_ptr<QueueCore> tasks;  // this slot's worker takes its batches from here
    std::deque<Batch> batches;          // sent to this slot, not fully answered (oldest first)
    WorkerRecord* record = nullptr;
  };
  struct Task {
    std::uint64_t id;
    std::string frame;
  };
  struct Pending {
    std::shared_ptr<TaskSink> sink;  // null: finished
    std::uint64_t tag = 0;
  };
  using Done = std::vector<std::pair<Pending, Outcome>>;

  [[noreturn]] void spawner_main();
  [[noreturn]] void worker_main(int slot);
  void result_loop();
  static void take_message(void* ctx, ByteView message);
  std::size_t batch_limit_locked() const;
  void refill_locked();
  void steal_locked(std::size_t idle_slot);
  void take_results_locked(ByteView message, Done& done, std::size_t only_slot);
  void take_result_locked(const ResultHeader& h, ByteView payload, Done& done);
  Pending* pending_locked(std::uint64_t id);
  void take_pending_locked(Pending& p, Outcome o, Done& done);
  void on_worker_died(const ResultHeader& h);
  void break_locked(const std::string& reason, std::vector<Pending>& failed);
  void finish_all(Done& done);
  void post_quit();
  void shutdown(bool graceful);

  const int processes_;
  const std::function<void()> initializer_;
  const std::size_t maxtasksperchild_;
  const pid_t owner_pid_;

  std::shared_ptr<Segment> records_;  // the WorkerRecords and their staging areas
  std::vector<Slot> slots_;
  std::unique_ptr<QueueCore> results_;
  pid_t spawner_pid_ = -1;
  os::Fd spawner_pidfd_;
  os::Fd command_fd_;  // parent -> spawner

  std::mutex m_;
  std::condition_variable all_done_;
  // Unfinished tasks by id: pending_[i] is task pending_base_ + i (ids are consecutive; the
  // front is trimmed as tasks finish, so lookups are an index, not a hash).
  std::deque<Pending> pending_;
  std::uint64_t pending_base_ = 1;
  std::deque<Task> backlog_;  // submitted, not yet sent to a worker (oldest first)
  std::vector<std::string> spare_;  // records of answered batches, for take_buffer()
  std::size_t spare_bytes_ = 0;
  double log_task_ns_;        // running estimate of ln(a task's run time in ns): sizes batches
  std::uint64_t next_id_ = 1;
  std::size_t unfinished_ = 0;  // submitted, completion not yet returned
  enum class State { running, closed, terminated } state_ = State::running;
  std::string broken_;  // why the pool can run no more tasks, or empty
  bool torn_down_ = false;

  std::thread result_thread_;
};

}  // namespace mpp::detail
