// The reference for the byte rows of the queue benchmarks: two processes copying through
// shared memory, with nothing a queue library adds. The producer copies each message into
// the next of `slots` slots of an anonymous shared mapping (made before fork), the consumer
// copies it out. A sequence word each way; a waiter spins for mpp's adaptive budget, then
// sleeps on a futex, and the other side makes the wake-up system call only when someone
// sleeps (as mpp's Queue does). One producer, one consumer.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>

#include "mpp/detail/futex.hpp"
#include "mpp/detail/spin.hpp"

namespace bench {

class ShmRing {
 public:
  // Slots of `max_size` bytes: about 16 MiB in flight, at least 2, at most 1024 (what the
  // suite gives Boost's message_queue).
  explicit ShmRing(std::size_t max_size)
      : slot_bytes_(max_size), slots_(std::clamp<std::size_t>((16u << 20) / std::max<std::size_t>(max_size, 1), 2, 1024)) {
    bytes_ = sizeof(Shared) + slots_ * (sizeof(std::size_t) + slot_bytes_);
    void* m = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw std::runtime_error("mmap of the shared ring failed");
    sh_ = new (m) Shared;
    lens_ = reinterpret_cast<std::size_t*>(static_cast<char*>(m) + sizeof(Shared));
    data_ = reinterpret_cast<char*>(lens_ + slots_);
  }
  ~ShmRing() { munmap(sh_, bytes_); }
  ShmRing(const ShmRing&) = delete;
  ShmRing& operator=(const ShmRing&) = delete;

  void send(const char* p, std::size_t n) {
    const std::uint32_t w = sh_->written.load(std::memory_order_relaxed);
    std::uint32_t r;
    while (w - (r = sh_->read.load(std::memory_order_acquire)) >= slots_) wait_change(sh_->read, r, sh_->read_sleepers);
    std::memcpy(data_ + (w % slots_) * slot_bytes_, p, n);
    lens_[w % slots_] = n;
    publish(sh_->written, w + 1, sh_->written_sleepers);
  }
  // Copies the next message into `out` (room for max_size bytes); returns its length.
  std::size_t recv(char* out) {
    const std::uint32_t r = sh_->read.load(std::memory_order_relaxed);
    std::uint32_t w;
    while ((w = sh_->written.load(std::memory_order_acquire)) == r) wait_change(sh_->written, w, sh_->written_sleepers);
    const std::size_t n = lens_[r % slots_];
    std::memcpy(out, data_ + (r % slots_) * slot_bytes_, n);
    publish(sh_->read, r + 1, sh_->read_sleepers);
    return n;
  }

 private:
  struct Shared {
    alignas(64) std::atomic<std::uint32_t> written{0};  // messages published
    std::atomic<std::uint32_t> written_sleepers{0};
    alignas(64) std::atomic<std::uint32_t> read{0};     // messages consumed
    std::atomic<std::uint32_t> read_sleepers{0};
  };

  // Sleeper count and word in seq_cst order on both sides, so a wake-up is never missed.
  static void publish(std::atomic<std::uint32_t>& word, std::uint32_t v, std::atomic<std::uint32_t>& sleepers) {
    word.store(v, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) mpp::detail::futex_wake(word, 1);
  }
  void wait_change(std::atomic<std::uint32_t>& word, std::uint32_t seen, std::atomic<std::uint32_t>& sleepers) {
    if (mpp::detail::spin_until([&] { return word.load(std::memory_order_acquire) != seen; }, budget_ns_)) return;
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    while (word.load(std::memory_order_seq_cst) == seen) mpp::detail::futex_wait(word, seen, std::nullopt);
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  std::size_t slot_bytes_, slots_, bytes_ = 0;
  Shared* sh_ = nullptr;
  std::size_t* lens_ = nullptr;
  char* data_ = nullptr;
  std::uint32_t budget_ns_ = mpp::detail::kSpinMinNs;  // per process after fork
};

}  // namespace bench
