// What a Queue, Pipe, Pool, List, Dict, Value or Array can carry, and how it is encoded.
//
// A value of type T can be sent (mpp::Sendable<T>) when T is one of:
//
//   1. trivially copyable (ints, doubles, enums, plain structs, std::array of them, ...),
//      except raw pointers: sent as the object's own bytes, read back without a copy
//      where the container allows it (Queue::get_view, Dict::view, List::view).
//   2. std::string: its characters.
//   3. a standard container or vocabulary type of sendable elements, nested as deep as
//      you like: std::vector, std::deque, std::list, std::basic_string, std::map,
//      std::multimap, std::unordered_map, std::set, std::unordered_set (any container with
//      begin/end/size and push_back or insert), std::array, std::pair, std::tuple,
//      std::optional, std::variant. mpp encodes them itself, compactly: a count then the
//      elements, and a contiguous run of trivially copyable elements (std::vector<double>,
//      a std::string inside a map) as one block of bytes. No Boost archive, no include.
//   4. a type of yours with a Boost.Serialization serialize() (member template
//      `template <class Ar> void serialize(Ar&, unsigned)`, or a free
//      `serialize(Ar&, T&, unsigned)` in T's namespace): sent through a Boost binary
//      archive. Include <mpp/archive.hpp> in the file that sends or receives it (and, as
//      Boost asks, boost/serialization/<container>.hpp for the containers serialize()
//      touches); files that send only 1-3 do not pay for Boost's archive headers.
//   5. a handle of a Manager's object (Dict, List, Queue, Value, Lock): sent as a
//      reference (the segment's name, the object's name and its types), reopened in the
//      receiving process (see mpp/handle_codec.hpp, which mpp/manager.hpp includes).
//
// Anything else is refused at compile time with one static_assert naming the two ways out:
// make the type trivially copyable, or give it serialize().
//
// All of these encodings are native-endian: they are meant for processes of one machine.
// Equal std::unordered_map or std::unordered_set values may encode differently (their
// order is the table's), so do not use them as Dict keys.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

namespace mpp {

template <class K, class V>
class Dict;
template <class T>
class List;
template <class T>
class Queue;
template <class T>
class Value;
class Lock;

namespace detail {

template <class T>
concept TriviallyEncoded = std::is_trivially_copyable_v<T> && !std::is_pointer_v<T> &&
                           !std::is_member_pointer_v<T>;

template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;

template <class T>
inline constexpr bool is_variant = false;
template <class... T>
inline constexpr bool is_variant<std::variant<T...>> = true;

// std::pair, std::tuple, std::array: a fixed number of elements, read with std::get.
template <class T>
concept TupleLike = requires { std::tuple_size<T>::value; };

// Containers with a key and a mapped value (map, multimap, unordered_map...).
template <class T>
concept MapLike = requires(T& t, const T& c) {
  typename T::key_type;
  typename T::mapped_type;
  c.begin();
  c.end();
  c.size();
  t.emplace(std::declval<typename T::key_type>(), std::declval<typename T::mapped_type>());
};

// Every other container: a sequence (push_back) or a set (insert).
template <class T>
concept RangeLike = requires(const T& c) {
  typename T::value_type;
  c.begin();
  c.end();
  c.size();
} && (requires(T& t) { t.push_back(std::declval<typename T::value_type>()); } ||
      requires(T& t) { t.insert(std::declval<typename T::value_type>()); });

// A stand-in archive, to ask whether a type has serialize() without including Boost.
struct ArchiveProbe {};

template <class T>
concept HasSerialize = requires(T& t, ArchiveProbe& ar) { t.serialize(ar, 0u); } ||
                       requires(T& t, ArchiveProbe& ar) { serialize(ar, t, 0u); };

// Handles of a Manager's objects, sent as references (mpp/handle_codec.hpp).
template <class T>
struct IsHandle : std::false_type {};
template <class K, class V>
struct IsHandle<Dict<K, V>> : std::true_type {};
template <class T>
struct IsHandle<List<T>> : std::true_type {};
template <class T>
struct IsHandle<Queue<T>> : std::true_type {};
template <class T>
struct IsHandle<Value<T>> : std::true_type {};
template <>
struct IsHandle<Lock> : std::true_type {};

template <class T>
concept Handle = IsHandle<T>::value;

template <class T>
constexpr bool sendable();

template <class T>
constexpr bool sendable() {
  if constexpr (std::is_reference_v<T> || std::is_pointer_v<T> || std::is_member_pointer_v<T>) {
    return false;
  } else if constexpr (TriviallyEncoded<T> || std::is_same_v<T, std::string> || Handle<T>) {
    return true;
  } else if constexpr (is_optional<T>) {
    return sendable<typename T::value_type>();
  } else if constexpr (is_variant<T>) {
    return []<class... A>(std::type_identity<std::variant<A...>>) {
      return (sendable<A>() && ...);
    }(std::type_identity<T>{});
  } else if constexpr (TupleLike<T>) {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (sendable<std::remove_cv_t<std::tuple_element_t<I, T>>>() && ...);
    }(std::make_index_sequence<std::tuple_size_v<T>>());
  } else if constexpr (MapLike<T>) {
    return sendable<typename T::key_type>() && sendable<typename T::mapped_type>();
  } else if constexpr (RangeLike<T>) {
    return sendable<typename T::value_type>();
  } else {
    return HasSerialize<T>;
  }
}

}  // namespace detail

// Whether mpp can send a T (the rules above).
template <class T>
inline constexpr bool is_sendable_v = detail::sendable<T>();

template <class T>
concept Sendable = is_sendable_v<T>;

// What a zero-copy read hands out (Queue::get_view, Dict::view and for_each, List::view):
// `const T&` into shared memory for a trivially copyable T (rule 1), std::string_view for
// std::string (rule 2), and a decoded copy, T itself, for the others. A reference or view
// is valid only as long as the call or read guard that gave it says.
template <class T>
using View = std::conditional_t<detail::TriviallyEncoded<T>, const T&,
                                std::conditional_t<std::is_same_v<T, std::string>, std::string_view, T>>;

}  // namespace mpp
