// How exceptions cross the wire of mpp::net, in both directions.
//
// A method that raises on the serving side is sent as ('#ERROR', exception value):
//   mpp::Empty -> queue.Empty(), mpp::Full -> queue.Full(), mpp::KeyError -> KeyError(msg),
//   mpp::IndexError -> IndexError(msg), mpp::ValueError -> ValueError(msg),
//   PythonException -> the exact value it carries, anything else -> RuntimeError(what()).
// On the calling side an #ERROR value is raised as the matching mpp exception for queue.Empty,
// queue.Full, KeyError and IndexError (so remote proxies behave as the local objects do), and
// as PythonException (an mpp::RemoteError) for every other exception.
#pragma once

#include <exception>

#include "mpp/errors.hpp"
#include "mpp/net/pyobject.hpp"

namespace mpp::net {

// An exception raised by a Python (or mpp) peer, carried as data. type_name() is its class
// name, message() the repr of its arguments.
class PythonException : public RemoteError {
 public:
  // Wraps `value`: type_name() is value.name, message() the repr of value.args.
  explicit PythonException(ExceptionValue value);
  // The exception as the peer sent it (module, class name, args, instance __dict__); a
  // server re-sends exactly this value when it passes the exception on.
  const ExceptionValue& value() const noexcept { return value_; }

 private:
  ExceptionValue value_;
};

// A reply whose value could not be decoded (outside the pickle subset: a datetime, a user
// class). When the value was an item taken from a queue it is not lost: data() holds the raw
// pickle bytes, the reply frame as the server pickled it, ('#RETURN', item), so Python's
// pickle.loads(data())[1] is the item. (Python: pickle.UnpicklingError.)
class UnpicklingError : public DecodeError {
 public:
  // `what` says why the decoder refused the reply; `data` is the reply frame, undecoded.
  UnpicklingError(const std::string& what, std::string data)
      : DecodeError(what), data_(std::move(data)) {}
  // The reply frame exactly as received: a pickle of ('#RETURN', item).
  const std::string& data() const noexcept { return data_; }

 private:
  std::string data_;
};

// The exception value to send for the exception `e` a served method threw (see above).
ExceptionValue to_exception_value(const std::exception_ptr& e);

// Throws the C++ exception for an #ERROR value received from a peer (see above).
[[noreturn]] void raise_exception_value(const ExceptionValue& v);

}  // namespace mpp::net
