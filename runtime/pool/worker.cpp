// A Pool worker: takes batches from its task queue, runs their tasks, and stages their results
// in shared memory before sending them, so that the parent finds the results of a worker that
// died before it sent them.
#include "mpp/detail/pool_core.hpp"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "mpp/detail/demangle.hpp"
#include "mpp/detail/os/child.hpp"

#include "protocol.hpp"

namespace mpp::detail {

using namespace pool;

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

}  // namespace mpp::detail
