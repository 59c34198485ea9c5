// What mpp::Pool's processes tell each other, shared by the files of runtime/pool/: the sizes
// and limits of the queues and batches, the parent's commands to the spawner, and the record
// format of the task and result queues (u32 size | bytes, repeated). Internal to the pool.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "mpp/detail/codec.hpp"
#include "mpp/detail/pool_core.hpp"

namespace mpp::detail::pool {

// Address space of each worker's task queue and of the result queue (pages are used only
// as messages touch them). A task frame may use at most a quarter of a task queue.
inline constexpr std::size_t kTaskQueueBytes = std::size_t{64} << 20;
inline constexpr std::size_t kResultQueueBytes = std::size_t{128} << 20;
// Slots of each queue's ring (128 bytes a slot; larger messages live in the segment's heap).
// A task queue holds a few batches at a time, the result queue a few messages per worker
// (producers wait when it is full), so small rings suffice; a ring's pages are faulted in
// as its slots are used, so a larger one would only cost resident memory.
inline constexpr std::size_t kTaskRingBytes = std::size_t{16} << 10;
inline constexpr std::size_t kResultRingBytes = std::size_t{128} << 10;
// Batches: a worker has at most kBatchesInFlight batches sent and not fully answered (one
// running, one queued behind it, so it never waits for the parent between batches); the
// rest wait in the parent's backlog, so apply_async never blocks. A batch holds as many
// tasks as run in about kBatchNanos by the running estimate (at least one, at most
// kMaxBatchTasks and kMaxBatchBytes unless a single task is larger): tiny tasks travel
// hundreds to a message, slow ones one at a time, so batching never costs balance.
inline constexpr std::size_t kBatchesInFlight = 2;
inline constexpr double kBatchNanos = 200'000;
inline constexpr std::size_t kMaxBatchTasks = 1024;
inline constexpr std::size_t kMaxBatchBytes = std::size_t{256} << 10;
// A worker's unsent results: sent at the end of each batch, when this area is full, or when
// the oldest waited longer than kResultDelay (a batch whose tasks were slower than guessed).
inline constexpr std::size_t kStagingBytes = std::size_t{256} << 10;
inline constexpr auto kResultDelay = std::chrono::microseconds(500);
// Records of answered batches kept for reuse: only large ones (a map's chunks), and at most
// this much in all.
inline constexpr std::size_t kSpareMin = std::size_t{64} << 10;
inline constexpr std::size_t kSpareMax = std::size_t{16} << 20;
// How often an idle result thread checks that the spawner is alive.
inline constexpr auto kSpawnerCheck = std::chrono::milliseconds(250);

struct Command {
  char op;  // 'R': replace the worker of `slot`; 'K': kill every worker and exit
  char pad[3];
  std::uint32_t slot;
};

// An error record's payload: u32 length of the type's name | the name | the message.
void append_error(std::string& out, const std::string& type, const std::string& message);
// The type's name and the message of an error payload. Throws DecodeError when truncated.
std::pair<std::string, std::string> parse_error(ByteView payload);

// A result record: u32 size | ResultHeader | payload; seal_record() sets the size once the
// payload is appended.
std::string record_of(const ResultHeader& h);
// Writes the record's size (everything after its u32 size field) into that field.
void seal_record(std::string& r);
// A task record again, from the frame a batch holds.
std::string task_record(ByteView frame);

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

// A QueueCore::get consumer that copies the message into the std::string at `ctx`.
void copy_message(void* ctx, ByteView bytes);

}  // namespace mpp::detail::pool
