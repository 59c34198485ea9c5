#include "mpp/net/exceptions.hpp"

namespace mpp::net {
namespace {

std::string message_of(const ExceptionValue& v) {
  if (v.args.size() == 1 && v.args[0].is<std::string>()) return v.args[0].get<std::string>();
  std::string s;
  for (std::size_t i = 0; i < v.args.size(); ++i) s += (i ? ", " : "") + repr(v.args[i]);
  return s;
}

ExceptionValue builtin(const char* name, std::string message) {
  return ExceptionValue{"builtins", name, {PyObject(std::move(message))}, {}};
}

}  // namespace

PythonException::PythonException(ExceptionValue value)
    : RemoteError(value.name, message_of(value)), value_(std::move(value)) {}

ExceptionValue to_exception_value(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const PythonException& x) {
    return x.value();
  } catch (const Empty&) {
    return ExceptionValue{"queue", "Empty", {}, {}};
  } catch (const Full&) {
    return ExceptionValue{"queue", "Full", {}, {}};
  } catch (const KeyError& x) {
    return builtin("KeyError", x.what());
  } catch (const IndexError& x) {
    return builtin("IndexError", x.what());
  } catch (const TypeMismatch& x) {
    return builtin("TypeError", x.what());
  } catch (const ValueError& x) {
    return builtin("ValueError", x.what());
  } catch (const EOFError& x) {
    return builtin("EOFError", x.what());
  } catch (const std::exception& x) {
    return builtin("RuntimeError", x.what());
  } catch (...) {
    return builtin("RuntimeError", "unknown C++ exception");
  }
}

void raise_exception_value(const ExceptionValue& v) {
  std::string msg = message_of(v);
  if (v.module == "queue" && v.name == "Empty") throw Empty(msg.empty() ? "queue.Empty raised by the manager" : msg);
  if (v.module == "queue" && v.name == "Full") throw Full(msg.empty() ? "queue.Full raised by the manager" : msg);
  if (v.module == "builtins" && v.name == "KeyError")
    throw KeyError(v.args.size() == 1 ? repr(v.args[0]) : msg);
  if (v.module == "builtins" && v.name == "IndexError") throw IndexError(msg);
  throw PythonException(v);
}

}  // namespace mpp::net
