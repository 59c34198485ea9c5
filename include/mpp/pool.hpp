// mpp::Pool — Python's multiprocessing.Pool: worker processes that run tasks given as a
// callable plus arguments, with apply, apply_async, map, imap, imap_unordered, starmap.
//
//   mpp::Pool pool(4);
//   int y = pool.apply(square, 7);
//   auto r = pool.apply_async(square, 8, mpp::callback([](int v) { ... }));
//   std::vector<int> ys = pool.map(square, xs);
//
// Callables: a function pointer, or a trivially copyable callable (a lambda that captures
// only trivially copyable values, by value). It is sent to the worker as its bytes and
// called through a trampoline, which is valid because the worker is a fork running the same
// program image; so it works for lambdas made after the workers were forked. Anything else
// (std::function, a lambda capturing a std::string) is refused at compile time: pass such
// values as arguments instead. A capture by reference or a pointer refers to the *worker's*
// memory, which is the parent's as it was when the pool was constructed.
//
// Arguments and results go through the one codec (detail/codec.hpp), under the rules of
// mpp/serialization.hpp: any trivially copyable type, std::string, standard containers and
// vocabulary types of sendable elements (std::vector, std::map, std::optional, std::tuple,
// ...), a Manager object's handle, or a type of yours with a Boost.Serialization
// serialize() (include <mpp/archive.hpp> where such a type is sent or received). C strings
// are sent as std::string.
//
// Errors: an exception thrown by a task comes back as RemoteError (its type name and
// what()), from get() and to the error_callback; the pool stays usable. A worker that dies
// during a task (SIGKILL, abort, segfault) fails that task alone with WorkerLost (pid and
// signal in the message) and is replaced; the other tasks and the pool go on (Python's
// Pool hangs here). When the pool can run no more tasks (terminated, or its initializer
// threw) unfinished tasks fail with BrokenPool.
//
// Batching: tasks submitted while the workers are busy travel to a worker in batches (sized
// to about 200 µs of work by the pool's estimate of a task's run time), and a worker sends
// results in batches: a result waits for its batch to end, or at most about 500 µs plus
// the run time of one later task of its batch. So a tiny task batched just before an
// unexpectedly slow one gets its result when the slow one ends. A lone task travels alone.
//
// Callbacks run in the parent, on the pool's result thread, one at a time: they must not
// block for long, and must not wait for another of the pool's results (that would wait for
// the thread that is running them).
//
// Processes: the constructor forks a "spawner" process, which forks the workers and every
// replacement, so no worker is ever forked from a multithreaded process (the spawner is
// single-threaded); then it starts the result thread. Construct pools before starting
// threads of your own (see process.hpp on fork safety). Workers die with the pool: the
// destructor terminates them, and they get PR_SET_PDEATHSIG if the parent is killed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <deque>
#include <ranges>
#include <cstring>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mpp/detail/pool_core.hpp"
#include "mpp/detail/pool_task.hpp"
#include "mpp/errors.hpp"
#include "mpp/process.hpp"

namespace mpp {

// Python's callback= and error_callback= keywords: pass mpp::callback(f) and/or
// mpp::error_callback(g) as the last arguments of apply_async, map_async, starmap_async.
// f gets the result (nothing for a void task); g gets the error as a const mpp::Error&.
template <class F>
struct Callback {
  F f;  // called in the parent, on the pool's result thread, with the result
};
// What mpp::error_callback(g) makes: see Callback.
template <class F>
struct ErrorCallback {
  F f;  // called in the parent, on the pool's result thread, with the error
};
// Python's callback=f: runs f(result) in the parent when a task succeeds.
template <class F>
Callback<std::decay_t<F>> callback(F&& f) {
  return {std::forward<F>(f)};
}
// Python's error_callback=g: runs g(const mpp::Error&) in the parent when a task fails.
template <class F>
ErrorCallback<std::decay_t<F>> error_callback(F&& f) {
  return {std::forward<F>(f)};
}

// The options of a Pool beyond the number of workers (Python's keyword arguments).
struct PoolOptions {
  // Runs once in each worker, before its first task (Python: initializer). It may be any
  // callable: workers are forked after it is stored. If it throws, the pool is broken:
  // unfinished and later tasks fail with BrokenPool naming the error.
  std::function<void()> initializer;
  // A worker is replaced after this many tasks; 0: never (Python: maxtasksperchild).
  std::size_t maxtasksperchild = 0;
};

namespace detail {

// What an AsyncResult and the result thread share.
template <class R>
struct ResultState {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
  std::exception_ptr error;

  template <class Deadline>
  bool wait_until(const std::optional<Deadline>& deadline) {
    std::unique_lock lock(m);
    if (!deadline) {
      cv.wait(lock, [&] { return done; });
      return true;
    }
    return cv.wait_until(lock, *deadline, [&] { return done; });
  }
};

template <class T>
struct IsCallbackTag : std::false_type {};
template <class F>
struct IsCallbackTag<Callback<F>> : std::true_type {};
template <class F>
struct IsCallbackTag<ErrorCallback<F>> : std::true_type {};

// How many of A... at the end are callback tags.
template <class... A>
constexpr std::size_t trailing_tags() {
  constexpr bool tags[] = {false, IsCallbackTag<std::decay_t<A>>::value...};
  std::size_t n = 0;
  for (std::size_t i = sizeof...(A); i > 0 && tags[i]; --i) ++n;
  return n;
}

template <class R>
struct ValueCallback {
  using type = std::function<void(const R&)>;
};
template <>
struct ValueCallback<void> {
  using type = std::function<void()>;
};

// The callbacks of one call, type-erased for the result thread.
template <class R>
struct Callbacks {
  typename ValueCallback<R>::type on_value;
  std::function<void(const Error&)> on_error;

  template <class F>
  void add(Callback<F>&& c) {
    on_value = std::move(c.f);
  }
  template <class F>
  void add(ErrorCallback<F>&& c) {
    on_error = std::move(c.f);
  }
};

template <class F>
constexpr void check_callable() {
  static_assert(std::is_trivially_copyable_v<F>,
                "mpp::Pool sends the callable to the worker processes as bytes, so it must be a "
                "function pointer or a trivially copyable callable (a lambda capturing only "
                "trivially copyable values, by value). Pass std::string, std::vector and the "
                "like as task arguments instead of capturing them; std::function cannot be sent.");
}

// Marks `st` done, wakes its waiters, then runs the callbacks (on the result thread).
template <class R>
void finish_result(ResultState<R>& st, const Callbacks<R>& cbs) {
  {
    std::lock_guard lock(st.m);
    st.done = true;
  }
  st.cv.notify_all();
  // Callbacks see the stored value; nobody changes it once done.
  if (!st.error) {
    if (cbs.on_value) {
      if constexpr (std::is_void_v<R>) cbs.on_value();
      else cbs.on_value(*st.value);
    }
  } else if (cbs.on_error) {
    try {
      std::rethrow_exception(st.error);
    } catch (const Error& e) {
      cbs.on_error(e);
    } catch (const std::exception& e) {
      cbs.on_error(RemoteError("std::exception", e.what()));
    }
  }
}

// One apply_async: one allocation holds the AsyncResult's state, the callbacks and the sink.
template <class R>
struct ApplyJob final : TaskSink {
  ResultState<R> st;
  Callbacks<R> cbs;

  void complete(std::uint64_t, const Outcome& o) override {
    {
      std::lock_guard lock(st.m);
      if (!o.ok) {
        st.error = o.error;
      } else {
        try {
          if constexpr (std::is_void_v<R>) st.value = true;
          else take_results<R>(o.payload, 1, [&](R&& v) { st.value.emplace(std::move(v)); });
        } catch (...) {
          st.error = std::current_exception();
        }
      }
    }
    finish_result(st, cbs);
  }
};

}  // namespace detail

// The result of an asynchronous call (Python: AsyncResult / MapResult). Copies share it.
template <class R>
class AsyncResult {
 public:
  // Made by the Pool's *_async methods; `st` is the state the result thread fills.
  explicit AsyncResult(std::shared_ptr<detail::ResultState<R>> st) : st_(std::move(st)) {}

  // Waits for the result and returns it (a copy; get() may be called again). Rethrows the
  // task's error: RemoteError, WorkerLost, BrokenPool.
  R get() {
    st_->wait_until(std::optional<detail::Clock::time_point>());
    return take();
  }
  // As get(), waiting at most `timeout`; throws TimeoutError when the result is not ready.
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) {
    if (!wait(timeout)) throw TimeoutError("the pool's result was not ready in time");
    return take();
  }
  // Waits until the result is ready.
  void wait() { st_->wait_until(std::optional<detail::Clock::time_point>()); }
  // Waits at most `timeout`; returns ready().
  template <class Rep, class Period>
  bool wait(std::chrono::duration<Rep, Period> timeout) {
    return st_->wait_until(detail::deadline_after(timeout));
  }
  bool ready() const {
    std::lock_guard lock(st_->m);
    return st_->done;
  }
  // Whether the call completed without an error. Throws ValueError when not ready yet.
  bool successful() const {
    std::lock_guard lock(st_->m);
    if (!st_->done) throw ValueError("successful(): the result is not ready yet");
    return !st_->error;
  }

 private:
  friend class Pool;
  // Waits, then moves the value out: for Pool's blocking map and starmap, whose AsyncResult
  // nobody else sees and which have no callbacks (a copy of a big vector costs its page
  // faults again).
  R release() {
    wait();
    std::lock_guard lock(st_->m);
    if (st_->error) std::rethrow_exception(st_->error);
    return std::move(*st_->value);
  }
  R take() {
    std::lock_guard lock(st_->m);
    if (st_->error) std::rethrow_exception(st_->error);
    if constexpr (!std::is_void_v<R>) return *st_->value;
  }
  std::shared_ptr<detail::ResultState<R>> st_;
};

namespace detail {

// What an IMapIterator and the result thread share. The input is read lazily, on the
// thread that calls next(): `feed` submits the next chunk and returns its item count (0 once
// the input is exhausted); next() keeps up to `lookahead` items submitted and not yet
// yielded, so a long or endless input is never read far ahead of its consumer.
template <class R>
struct IMapState {
  std::mutex m;
  std::condition_variable cv;
  bool ordered = true;
  bool input_done = false;
  std::size_t chunks_sent = 0, chunks_seen = 0, next_chunk = 0;
  std::size_t items_sent = 0, items_yielded = 0, lookahead = 0;
  std::map<std::size_t, std::deque<R>> chunks;  // ordered: arrived, by chunk index
  std::map<std::size_t, std::pair<std::exception_ptr, std::size_t>> errors;  // ordered: failed chunks, item counts
  std::deque<R> ready;                                                      // unordered: in completion order
  std::deque<std::pair<std::exception_ptr, std::size_t>> ready_errors;

  std::mutex feed_m;  // held while feeding (never with m)
  std::function<std::size_t()> feed;

  void deliver(std::size_t chunk, std::size_t count, std::deque<R>&& values, std::exception_ptr error) {
    {
      std::lock_guard lock(m);
      ++chunks_seen;
      if (ordered) {
        if (error) errors[chunk] = {error, count};
        else chunks[chunk] = std::move(values);
      } else if (error) {
        ready_errors.emplace_back(error, count);
      } else {
        for (auto& v : values) ready.push_back(std::move(v));
      }
    }
    cv.notify_all();
  }

  // Submits chunks until `lookahead` items are ahead of the consumer or the input ends.
  // Throws what reading the input or submitting throws (BrokenPool once the pool is gone).
  void top_up() {
    std::lock_guard feeding(feed_m);
    for (;;) {
      {
        std::lock_guard lock(m);
        if (input_done || items_sent - items_yielded >= lookahead) return;
      }
      std::size_t n = feed();
      std::lock_guard lock(m);
      if (n == 0) {
        input_done = true;
      } else {
        ++chunks_sent;
        items_sent += n;
      }
    }
  }
};

// The outcomes of one apply_async: the AsyncResult's state and the callbacks.
template <class R>
struct ApplyJob;

// The chunks of one map/imap call: tag = chunk index << 32 | item count.
template <class OnChunk>
struct ChunkJob final : TaskSink {
  explicit ChunkJob(OnChunk f) : on_chunk(std::move(f)) {}
  void complete(std::uint64_t tag, const Outcome& o) override { on_chunk(tag >> 32, tag & 0xffffffffu, o); }
  OnChunk on_chunk;
};

inline std::uint64_t chunk_tag(std::size_t k, std::size_t count) {
  return static_cast<std::uint64_t>(k) << 32 | static_cast<std::uint64_t>(count);
}

}  // namespace detail

// The iterator of imap / imap_unordered (Python: IMapIterator). Yields results in input
// order (imap) or as they complete (imap_unordered). Copies share the sequence.
template <class R>
class IMapIterator {
 public:
  // Made by Pool::imap and imap_unordered; `st` is the sequence the result thread fills.
  explicit IMapIterator(std::shared_ptr<detail::IMapState<R>> st) : st_(std::move(st)) {}

  // The next result; nullopt when all were yielded. Rethrows a task's error (once, at its
  // place in the order: a failed chunk of imap yields its error instead of its values).
  std::optional<R> next() { return next_until(std::nullopt); }
  // As next(), waiting at most `timeout` for it; throws TimeoutError.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    return next_until(detail::deadline_after(timeout));
  }

  // Range-for support: `for (int v : pool.imap(f, xs))`.
  // An input iterator over the results: each ++ calls next() (and may rethrow a task's
  // error); equal to the end sentinel once every result was yielded.
  class iterator {
   public:
    using value_type = R;                  // a result
    using difference_type = std::ptrdiff_t;  // required of an input iterator; unused
    iterator() = default;
    // Positioned on the first result (waits for it).
    explicit iterator(IMapIterator* it) : it_(it) { ++*this; }
    // The current result; valid until the next ++.
    R& operator*() const { return *cur_; }
    // Waits for the next result.
    iterator& operator++() {
      cur_ = it_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    // True once every result was yielded.
    bool operator==(std::default_sentinel_t) const { return !cur_; }

   private:
    IMapIterator* it_ = nullptr;
    mutable std::optional<R> cur_;
  };
  // The range of the results not yet taken with next(); single pass.
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::optional<R> next_until(std::optional<detail::Clock::time_point> deadline) {
    detail::IMapState<R>& s = *st_;
    s.top_up();
    std::unique_lock lock(s.m);
    for (;;) {
      if (s.ordered) {
        while (s.next_chunk < s.chunks_sent) {
          if (auto e = s.errors.find(s.next_chunk); e != s.errors.end()) {
            auto err = e->second.first;
            s.items_yielded += e->second.second;
            s.errors.erase(e);
            ++s.next_chunk;
            std::rethrow_exception(err);
          }
          auto c = s.chunks.find(s.next_chunk);
          if (c == s.chunks.end()) break;
          if (!c->second.empty()) {
            R v = std::move(c->second.front());
            c->second.pop_front();
            ++s.items_yielded;
            return v;
          }
          s.chunks.erase(c);
          ++s.next_chunk;
        }
        if (s.input_done && s.next_chunk == s.chunks_sent) return std::nullopt;
      } else {
        if (!s.ready_errors.empty()) {
          auto err = s.ready_errors.front();
          s.ready_errors.pop_front();
          s.items_yielded += err.second;
          std::rethrow_exception(err.first);
        }
        if (!s.ready.empty()) {
          R v = std::move(s.ready.front());
          s.ready.pop_front();
          ++s.items_yielded;
          return v;
        }
        if (s.input_done && s.chunks_seen == s.chunks_sent) return std::nullopt;
      }
      if (!deadline) {
        s.cv.wait(lock);
      } else if (s.cv.wait_until(lock, *deadline) == std::cv_status::timeout) {
        throw TimeoutError("imap: the next result was not ready in time");
      }
    }
  }

  std::shared_ptr<detail::IMapState<R>> st_;
};

// Python's multiprocessing.Pool: worker processes (forks of this program) that run calls of
// trivially copyable callables, with arguments and results sent through the codec. A worker
// that dies fails only the task it was running (WorkerLost) and is replaced.
class Pool {
 public:
  // Starts `processes` workers (cpu_count() when 0). Throws ValueError when processes < 0,
  // OSError when a process cannot be forked.
  explicit Pool(int processes = 0, PoolOptions options = {});
  // terminate(), as leaving Python's `with Pool() as pool:`.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Runs f(args...) in a worker and waits for its result; rethrows its error.
  template <class F, class... A>
  auto apply(F f, A&&... args) {
    return apply_async(f, std::forward<A>(args)...).get();
  }

  // Runs f(args...) in a worker. The last arguments may be mpp::callback(g) and/or
  // mpp::error_callback(h). Throws BrokenPool after close()/terminate().
  template <class F, class... A>
  auto apply_async(F f, A&&... a) {
    constexpr std::size_t ntags = detail::trailing_tags<A...>();
    return apply_split(f, std::forward_as_tuple(std::forward<A>(a)...),
                       std::make_index_sequence<sizeof...(A) - ntags>(),
                       std::make_index_sequence<ntags>());
  }

  // f over every element of `items`, results in input order. The input is cut into chunks
  // of `chunksize` items (0: Python's default, about 4 chunks per worker). Throws the first
  // error of a task (RemoteError, WorkerLost).
  template <class F, std::ranges::input_range In>
  auto map(F f, In&& items, std::size_t chunksize = 0) {
    return map_async(f, std::forward<In>(items), chunksize).release();
  }

  // As map, asynchronously; `extra` may be a chunk size and/or callback tags.
  template <class F, std::ranges::input_range In, class... X>
  auto map_async(F f, In&& items, X&&... extra) {
    using T = detail::StoredArg<std::ranges::range_reference_t<In>>;
    return star_async<T>(f, std::forward<In>(items), [](const auto& item, std::string& out) {
      detail::put_pack(out, T(item));
    }, std::forward<X>(extra)...);
  }

  // Lazily yields f(x) for x in `items`, in order (imap) or as completed (imap_unordered).
  // chunksize defaults to 1, as in Python. The input is read lazily too, on the thread that
  // calls next(), a bounded look-ahead (at least 4096 items) in front of the consumer: so
  // it may be endless, and an lvalue range must outlive the iteration (an rvalue is moved
  // in). Reading the input or submitting may throw from next(); BrokenPool once the pool
  // is gone.
  template <class F, std::ranges::input_range In>
  auto imap(F f, In&& items, std::size_t chunksize = 1) {
    return imap_impl(f, std::forward<In>(items), chunksize, true);
  }
  template <class F, std::ranges::input_range In>
  auto imap_unordered(F f, In&& items, std::size_t chunksize = 1) {
    return imap_impl(f, std::forward<In>(items), chunksize, false);
  }

  // f(a, b, ...) for every tuple (or pair) in `items`.
  template <class F, std::ranges::input_range In>
  auto starmap(F f, In&& items, std::size_t chunksize = 0) {
    return starmap_async(f, std::forward<In>(items), chunksize).release();
  }
  template <class F, std::ranges::input_range In, class... X>
  auto starmap_async(F f, In&& items, X&&... extra) {
    using Tup = std::remove_cvref_t<std::ranges::range_reference_t<In>>;
    return star_tuple_async(f, std::forward<In>(items),
                            std::make_index_sequence<std::tuple_size_v<Tup>>(),
                            std::forward<X>(extra)...);
  }

  // No more tasks may be submitted; the workers finish the queued ones (then join()).
  void close() { core_->close(); }
  // Stops the workers now; unfinished tasks fail with BrokenPool.
  void terminate() { core_->terminate(); }
  // Waits until every task finished and the workers exited. Throws ValueError unless
  // close() or terminate() was called first.
  void join() { core_->join(); }

 private:
  template <class F, class Tuple, std::size_t... I, std::size_t... C>
  auto apply_split(F f, Tuple&& all, std::index_sequence<I...>, std::index_sequence<C...>) {
    detail::check_callable<F>();
    using R = detail::PackResult<F, detail::StoredArg<std::tuple_element_t<I, Tuple>>...>;
    detail::Callbacks<R> cbs;
    (cbs.add(std::move(std::get<sizeof...(I) + C>(all))), ...);
    auto frame = detail::begin_task<F, detail::StoredArg<std::tuple_element_t<I, Tuple>>...>(f, 1);
    detail::put_pack(frame, detail::StoredArg<std::tuple_element_t<I, Tuple>>(
                                std::forward<std::tuple_element_t<I, Tuple>>(std::get<I>(all)))...);
    auto job = std::make_shared<detail::ApplyJob<R>>();
    job->cbs = std::move(cbs);
    std::shared_ptr<detail::ResultState<R>> st(job, &job->st);
    core_->submit(std::move(frame), std::move(job), 0);
    return AsyncResult<R>(st);
  }

  std::size_t default_chunksize(std::size_t n) const {
    std::size_t per = static_cast<std::size_t>(core_->processes()) * 4;
    return n / per + (n % per ? 1 : 0);
  }

  // Calls body(r) with `items` as a sized forward range: itself, or a vector of its
  // elements for a single-pass or unsized input.
  template <class In, class Body>
  static auto with_sized(In&& items, Body&& body) {
    if constexpr (std::ranges::sized_range<In> && std::ranges::forward_range<In>) {
      return body(items);
    } else {
      std::vector<std::remove_cvref_t<std::ranges::range_reference_t<In>>> v;
      for (auto&& x : items) v.push_back(x);
      return body(v);
    }
  }

  static std::size_t chunk_count(std::size_t n, std::size_t chunksize) {
    return (n + chunksize - 1) / chunksize;
  }

  // Submits the items of the sized range `r` in chunks of `chunksize`, each item encoded
  // by put_item(item, out); chunk k (items [first, first + count)) ends with
  // on_chunk(k, first, count, outcome), on the result thread.
  template <class... S, class F, class Range, class PutItem, class OnChunk>
  void submit_chunks(F f, Range& r, std::size_t chunksize, PutItem put_item, OnChunk on_chunk) {
    using First = std::tuple_element_t<0, std::tuple<S..., void>>;
    // Plain values in contiguous memory are the chunk's bytes as they are.
    constexpr bool plain = sizeof...(S) == 1 && (detail::TriviallyEncoded<S> && ...) &&
                           std::ranges::contiguous_range<Range> &&
                           std::is_same_v<std::ranges::range_value_t<Range>, First>;
    const std::size_t n = std::ranges::size(r);
    auto it = std::ranges::begin(r);
    auto job = std::make_shared<detail::ChunkJob<std::function<void(std::size_t, std::size_t, const detail::Outcome&)>>>(
        [chunksize, on_chunk](std::size_t k, std::size_t count, const detail::Outcome& o) {
          on_chunk(k, k * chunksize, count, o);
        });
    for (std::size_t k = 0, first = 0; first < n; ++k, first += chunksize) {
      std::size_t count = std::min(chunksize, n - first);
      std::string buffer;
      if constexpr ((detail::TriviallyEncoded<S> && ...)) {
        buffer = core_->take_buffer(sizeof(std::uint32_t) + sizeof(detail::TaskHeader) + sizeof(F) +
                                    sizeof(std::uint64_t) + count * (sizeof(S) + ... + 0));
      }
      auto frame = detail::begin_task<F, S...>(f, count, std::move(buffer));
      if constexpr (plain) {
        frame.append(reinterpret_cast<const char*>(std::to_address(it)), count * sizeof(First));
        it += static_cast<std::ranges::range_difference_t<Range>>(count);
      } else {
        for (std::size_t i = 0; i < count; ++i, ++it) put_item(*it, frame);
      }
      core_->submit(std::move(frame), job, detail::chunk_tag(k, count));
    }
  }

  // map_async / starmap_async over argument packs S...
  template <class... S, class F, class In, class PutItem, class... X>
  auto star_async_packs(F f, In&& items, PutItem put_item, X&&... extra) {
    detail::check_callable<F>();
    using R = detail::PackResult<F, S...>;
    static_assert(!std::is_void_v<R>, "map/starmap need a function that returns a value");
    std::size_t chunksize = 0;
    detail::Callbacks<std::vector<R>> cbs;
    auto take_extra = [&](auto&& x) {
      if constexpr (std::is_integral_v<std::remove_cvref_t<decltype(x)>>) {
        chunksize = static_cast<std::size_t>(x);
      } else {
        cbs.add(std::move(x));
      }
    };
    (take_extra(std::forward<X>(extra)), ...);
    // Results are decoded straight into their place in the output when R can be
    // default-constructed, else into per-chunk parts joined at the end.
    constexpr bool in_place = std::is_default_constructible_v<R>;
    struct Job {
      std::mutex m;
      std::vector<R> out;
      std::vector<std::vector<R>> parts;
      std::size_t left = 0;
      bool finished = false;
    };
    auto st = std::make_shared<detail::ResultState<std::vector<R>>>();
    auto job = std::make_shared<Job>();
    auto on_chunk = [st, job, cbs](std::size_t k, std::size_t first, std::size_t count, const detail::Outcome& o) {
      std::exception_ptr error = o.error;
      if (o.ok) {
        try {
          // Chunks fill disjoint ranges of the output: no lock needed to decode.
          if constexpr (in_place) {
            detail::take_results_into<R>(o.payload, count, job->out.data() + first);
          } else {
            std::vector<R> part;
            part.reserve(count);
            detail::take_results<R>(o.payload, count, [&](R&& v) { part.push_back(std::move(v)); });
            std::lock_guard lock(job->m);
            job->parts[k] = std::move(part);
          }
        } catch (...) {
          error = std::current_exception();
        }
      }
      bool done_now = false;
      {
        std::lock_guard lock(job->m);
        if (job->finished) return;
        std::lock_guard l2(st->m);
        if (error) {
          job->finished = done_now = true;
          st->error = error;
        } else if (--job->left == 0) {
          job->finished = done_now = true;
          if constexpr (in_place) {
            st->value.emplace(std::move(job->out));
          } else {
            std::vector<R> out;
            for (auto& p : job->parts)
              for (auto& v : p) out.push_back(std::move(v));
            job->parts.clear();
            st->value.emplace(std::move(out));
          }
        }
      }
      if (done_now) detail::finish_result(*st, cbs);
    };
    with_sized(std::forward<In>(items), [&](auto& r) {
      std::size_t n = std::ranges::size(r);
      std::size_t cs = chunksize ? chunksize : std::max<std::size_t>(1, default_chunksize(n));
      std::size_t chunks = chunk_count(n, cs);
      if (chunks == 0) {
        st->value.emplace();
        detail::finish_result(*st, cbs);
        return 0;
      }
      if constexpr (in_place) job->out.resize(n);
      else job->parts.resize(chunks);
      job->left = chunks;
      submit_chunks<S...>(f, r, cs, put_item, on_chunk);
      return 0;
    });
    return AsyncResult<std::vector<R>>(st);
  }

  template <class T, class F, class In, class PutItem, class... X>
  auto star_async(F f, In&& items, PutItem put_item, X&&... extra) {
    return star_async_packs<T>(f, std::forward<In>(items), put_item, std::forward<X>(extra)...);
  }

  template <class F, class In, std::size_t... I, class... X>
  auto star_tuple_async(F f, In&& items, std::index_sequence<I...>, X&&... extra) {
    using Tup = std::remove_cvref_t<std::ranges::range_reference_t<In>>;
    return star_async_packs<detail::StoredArg<std::tuple_element_t<I, Tup>>...>(
        f, std::forward<In>(items),
        [](const auto& t, std::string& out) {
          detail::put_pack(out, detail::StoredArg<std::tuple_element_t<I, Tup>>(std::get<I>(t))...);
        },
        std::forward<X>(extra)...);
  }

  template <class F, class In>
  auto imap_impl(F f, In&& items, std::size_t chunksize, bool ordered) {
    detail::check_callable<F>();
    using T = detail::StoredArg<std::ranges::range_reference_t<In>>;
    using R = detail::PackResult<F, T>;
    static_assert(!std::is_void_v<R>, "imap needs a function that returns a value");
    if (chunksize == 0) chunksize = 1;
    auto st = std::make_shared<detail::IMapState<R>>();
    st->ordered = ordered;
    st->lookahead = std::max<std::size_t>(4096, 4 * static_cast<std::size_t>(core_->processes()) * chunksize);
    // The results go to the iterator's state while it exists (a weak reference: the state
    // owns the feeder, which owns this job).
    std::weak_ptr<detail::IMapState<R>> weak = st;
    auto job = std::make_shared<detail::ChunkJob<std::function<void(std::size_t, std::size_t, const detail::Outcome&)>>>(
        [weak](std::size_t k, std::size_t count, const detail::Outcome& o) {
          auto st = weak.lock();
          if (!st) return;
          std::deque<R> values;
          std::exception_ptr error = o.error;
          if (o.ok) {
            try {
              detail::take_results<R>(o.payload, count, [&](R&& v) { values.push_back(std::move(v)); });
            } catch (...) {
              error = std::current_exception();
            }
          }
          st->deliver(k, count, std::move(values), error);
        });
    // The input as a view: a reference to an lvalue range (which must outlive the
    // iteration, as Python's imap holds its iterable), or the range itself when moved in.
    using View = decltype(std::views::all(std::forward<In>(items)));
    struct Input {
      View view;
      std::optional<std::ranges::iterator_t<View>> it;
    };
    auto input = std::make_shared<Input>(Input{std::views::all(std::forward<In>(items)), std::nullopt});
    std::weak_ptr<detail::PoolCore> weak_core = core_;
    st->feed = [f, chunksize, input, job, weak_core, k = std::size_t{0}]() mutable -> std::size_t {
      auto core = weak_core.lock();
      if (!core) throw BrokenPool("imap: the pool was destroyed before the input was consumed");
      if (!input->it) input->it.emplace(std::ranges::begin(input->view));
      auto& it = *input->it;
      if (it == std::ranges::end(input->view)) return 0;
      auto frame = detail::begin_task<F, T>(f, 0);
      const std::size_t count_at = frame.size() - sizeof(std::uint64_t);
      std::uint64_t count = 0;
      for (; count < chunksize && it != std::ranges::end(input->view); ++it, ++count) {
        detail::put_pack(frame, T(*it));
      }
      std::memcpy(frame.data() + count_at, &count, sizeof count);
      core->submit(std::move(frame), job, detail::chunk_tag(k++, count));
      return count;
    };
    st->top_up();  // the workers start now, as Python's imap
    return IMapIterator<R>(st);
  }

  std::shared_ptr<detail::PoolCore> core_;
};

}  // namespace mpp
