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

  // Python's d[k] += x, -= x, ... as one atomic d.modify(k, ...): no other process's
  // change to k can come between the read and the write. An absent k starts from V{}
  // (as in a collections.defaultdict), where Python's dict raises KeyError.
#define MPP_ITEM_REF_COMPOUND(op)                                        \
  template <class X>                                                     \
    requires requires(V& v, const X& x) { v op x; }                      \
  ItemRef& operator op(const X& x) {                                     \
    d_.modify(k_, [&x](V& v) { v op x; });                               \
    return *this;                                                        \
  }
  MPP_ITEM_REF_COMPOUND(+=)
  MPP_ITEM_REF_COMPOUND(-=)
  MPP_ITEM_REF_COMPOUND(*=)
  MPP_ITEM_REF_COMPOUND(/=)
  MPP_ITEM_REF_COMPOUND(%=)
  MPP_ITEM_REF_COMPOUND(&=)
  MPP_ITEM_REF_COMPOUND(|=)
  MPP_ITEM_REF_COMPOUND(^=)
  MPP_ITEM_REF_COMPOUND(<<=)
  MPP_ITEM_REF_COMPOUND(>>=)
#undef MPP_ITEM_REF_COMPOUND

 private:
  Dict& d_;
  K k_;
};

}  // namespace mpp::detail
