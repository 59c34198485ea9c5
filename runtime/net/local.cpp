#include "mpp/net/local.hpp"

#include <algorithm>

#include "mpp/net/exceptions.hpp"

namespace mpp::net {

// ----- InProcessQueue ---------------------------------------------------------------------

std::optional<InProcessQueue::Clock::time_point> InProcessQueue::until(Seconds timeout) {
  if (timeout.count() <= 0) return Clock::now();
  // Beyond a year is "for ever" (and keeps the time_point arithmetic from overflowing).
  if (timeout.count() > 3.2e7) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
}

namespace {
template <class Pred>
bool wait_for(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
              std::optional<std::chrono::steady_clock::time_point> deadline, Pred ready) {
  if (!deadline) {
    cv.wait(lock, ready);
    return true;
  }
  return cv.wait_until(lock, *deadline, ready);
}
}  // namespace

void InProcessQueue::put_until(PyObject item, std::optional<Clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  if (!wait_for(lock, not_full_, deadline, [&] { return maxsize_ == 0 || items_.size() < maxsize_; }))
    throw Full("the queue is full");
  items_.push_back(std::move(item));
  ++unfinished_;
  not_empty_.notify_one();
}

PyObject InProcessQueue::get_until(std::optional<Clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  if (!wait_for(lock, not_empty_, deadline, [&] { return !items_.empty(); })) throw Empty("the queue is empty");
  PyObject v = std::move(items_.front());
  items_.pop_front();
  not_full_.notify_one();
  return v;
}

std::size_t InProcessQueue::qsize() const {
  std::lock_guard lock(mu_);
  return items_.size();
}

bool InProcessQueue::full() const {
  std::lock_guard lock(mu_);
  return maxsize_ > 0 && items_.size() >= maxsize_;
}

void InProcessQueue::task_done() {
  std::lock_guard lock(mu_);
  if (unfinished_ == 0) throw ValueError("task_done() called too many times");
  if (--unfinished_ == 0) all_done_.notify_all();
}

void InProcessQueue::join_until(std::optional<Clock::time_point> deadline) {
  std::unique_lock lock(mu_);
  if (!wait_for(lock, all_done_, deadline, [&] { return unfinished_ == 0; }))
    throw TimeoutError("tasks are still unfinished");
}

// ----- InProcessDict ----------------------------------------------------------------------

std::optional<PyObject> InProcessDict::get(const PyObject& key) const {
  std::lock_guard lock(mu_);
  auto it = index_.find(dict_key(key));
  if (it == index_.end()) return std::nullopt;
  return it->second->second;
}

void InProcessDict::set_locked(const PyObject& key, PyObject value) {
  PyObject k = dict_key(key);
  auto it = index_.find(k);
  if (it != index_.end()) {
    it->second->second = std::move(value);
    return;
  }
  order_.emplace_back(key, std::move(value));
  try {
    index_.emplace(std::move(k), std::prev(order_.end()));
  } catch (...) {
    order_.pop_back();
    throw;
  }
}

void InProcessDict::set(const PyObject& key, PyObject value) {
  std::lock_guard lock(mu_);
  set_locked(key, std::move(value));
}

bool InProcessDict::erase(const PyObject& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(dict_key(key));
  if (it == index_.end()) return false;
  order_.erase(it->second);
  index_.erase(it);
  return true;
}

PyObject InProcessDict::pop(const PyObject& key) {
  std::lock_guard lock(mu_);
  auto it = index_.find(dict_key(key));
  if (it == index_.end()) throw KeyError(repr(key));
  PyObject v = std::move(it->second->second);
  order_.erase(it->second);
  index_.erase(it);
  return v;
}

PyObject InProcessDict::setdefault(const PyObject& key, PyObject dflt) {
  std::lock_guard lock(mu_);
  auto it = index_.find(dict_key(key));
  if (it != index_.end()) return it->second->second;
  set_locked(key, dflt);
  return dflt;
}

std::pair<PyObject, PyObject> InProcessDict::popitem() {
  std::lock_guard lock(mu_);
  if (order_.empty()) throw KeyError("popitem(): dictionary is empty");
  auto last = std::move(order_.back());
  index_.erase(dict_key(last.first));
  order_.pop_back();
  return last;
}

void InProcessDict::update(const Pairs& pairs) {
  std::lock_guard lock(mu_);
  for (const auto& [k, v] : pairs) set_locked(k, v);
}

void InProcessDict::clear() {
  std::lock_guard lock(mu_);
  index_.clear();
  order_.clear();
}

std::size_t InProcessDict::size() const {
  std::lock_guard lock(mu_);
  return order_.size();
}

InProcessDict::Pairs InProcessDict::items() const {
  std::lock_guard lock(mu_);
  return Pairs(order_.begin(), order_.end());
}

// ----- InProcessList ----------------------------------------------------------------------

std::size_t InProcessList::resolve(long long i, bool for_pop) const {
  auto n = static_cast<long long>(items_.size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) throw IndexError(for_pop ? "pop index out of range" : "list index out of range");
  return static_cast<std::size_t>(i);
}

PyObject InProcessList::get(long long i) const {
  std::lock_guard lock(mu_);
  return items_[resolve(i)];
}

void InProcessList::set(long long i, PyObject v) {
  std::lock_guard lock(mu_);
  items_[resolve(i)] = std::move(v);
}

void InProcessList::insert(long long i, PyObject v) {
  std::lock_guard lock(mu_);
  auto n = static_cast<long long>(items_.size());
  if (i < 0) i = std::max(0LL, i + n);
  i = std::min(i, n);
  items_.insert(items_.begin() + i, std::move(v));
}

PyObject InProcessList::pop(long long i) {
  std::lock_guard lock(mu_);
  if (items_.empty()) throw IndexError("pop from empty list");
  auto at = resolve(i, true);
  PyObject v = std::move(items_[at]);
  items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(at));
  return v;
}

void InProcessList::append(PyObject v) {
  std::lock_guard lock(mu_);
  items_.push_back(std::move(v));
}

void InProcessList::extend(const std::vector<PyObject>& values) {
  std::lock_guard lock(mu_);
  items_.insert(items_.end(), values.begin(), values.end());
}

void InProcessList::remove(const PyObject& v) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(items_.begin(), items_.end(), [&](const PyObject& x) { return py_equal(x, v); });
  if (it == items_.end()) throw ValueError("list.remove(x): x not in list");
  items_.erase(it);
}

std::size_t InProcessList::index(const PyObject& v, std::size_t start) const {
  std::lock_guard lock(mu_);
  for (std::size_t i = start; i < items_.size(); ++i)
    if (py_equal(items_[i], v)) return i;
  throw ValueError(repr(v) + " is not in list");
}

std::size_t InProcessList::count(const PyObject& v) const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(items_.begin(), items_.end(), [&](const PyObject& x) { return py_equal(x, v); }));
}

std::size_t InProcessList::size() const {
  std::lock_guard lock(mu_);
  return items_.size();
}

void InProcessList::clear() {
  std::lock_guard lock(mu_);
  items_.clear();
}

void InProcessList::reverse() {
  std::lock_guard lock(mu_);
  std::reverse(items_.begin(), items_.end());
}

void InProcessList::sort(bool reverse) {
  std::lock_guard lock(mu_);
  auto number = [](const PyObject& v) -> std::optional<double> {
    if (v.is<bool>()) return v.get<bool>() ? 1.0 : 0.0;
    if (v.is<std::int64_t>()) return static_cast<double>(v.get<std::int64_t>());
    if (v.is<double>()) return v.get<double>();
    return std::nullopt;
  };
  auto less = [&](const PyObject& a, const PyObject& b) {
    auto x = number(a), y = number(b);
    if (x && y) return *x < *y;
    return a < b;
  };
  // Python's reverse sort is stable too: equal elements keep their order.
  if (reverse) std::stable_sort(items_.begin(), items_.end(), [&](const PyObject& a, const PyObject& b) { return less(b, a); });
  else std::stable_sort(items_.begin(), items_.end(), less);
}

std::vector<PyObject> InProcessList::to_vector() const {
  std::lock_guard lock(mu_);
  return items_;
}

// ----- InProcessValue ---------------------------------------------------------------------

PyObject InProcessValue::value() const {
  std::lock_guard lock(mu_);
  return v_;
}

void InProcessValue::set_value(PyObject v) {
  std::lock_guard lock(mu_);
  v_ = std::move(v);
}

}  // namespace mpp::net
