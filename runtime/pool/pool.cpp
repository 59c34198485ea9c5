// mpp::Pool and its engine's life: the PoolCore starts the spawner and the result thread and
// stops them. The engine's other parts: spawner.cpp, worker.cpp, dispatcher.cpp, results.cpp.
#include "mpp/pool.hpp"

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>

#include "mpp/detail/os/child.hpp"

#include "protocol.hpp"

namespace mpp {
namespace detail {

using namespace pool;

namespace {

// A queue of its own anonymous segment (shared with the processes forked later).
QueueCore make_queue(std::size_t capacity, std::size_t ring_bytes, const char* value_type) {
  return QueueCore::named(Segment::anonymous(capacity), "", ObjectKind::queue, 0, ring_bytes, value_type);
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
  // parent's resident memory. Memory the allocator holds free (often most of it, after a big
  // container was freed) goes back to the system first.
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
