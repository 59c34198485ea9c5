// What `d[k]` returns for the dicts (mpp::Dict, mpp::redis::Dict): Python's d[k] both ways.
// `d[k] = v` calls d.set(k, v); reading it as a V calls d.at(k), which throws KeyError when
// k is absent. It holds a reference to the dict: use it within the expression.
#pragma once

#include <utility>

namespace mpp::detail {

template <class Dict, class K, class V>
class ItemRef {
 public:
  ItemRef(Dict& d, K k) : d_(d), k_(std::move(k)) {}
  ItemRef& operator=(const V& value) {
    d_.set(k_, value);
    return *this;
  }
  operator V() const { return d_.at(k_); }

 private:
  Dict& d_;
  K k_;
};

}  // namespace mpp::detail
