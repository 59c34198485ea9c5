// Readable names of types known only at run time (the dynamic type of an exception or of a
// Process subclass), for messages such as "Process P-1: std::runtime_error: boom".
#pragma once

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

namespace mpp::detail {

// The demangled name of `ti` ("std::runtime_error"); the mangled one if demangling fails.
inline std::string demangle(const std::type_info& ti) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(ti.name(), nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(ti.name());
}

// The demangled name of the exception being handled (call inside a catch block), or
// "unknown exception" when none is.
inline std::string current_exception_type_name() {
  const std::type_info* ti = abi::__cxa_current_exception_type();
  return ti ? demangle(*ti) : std::string("unknown exception");
}

// what() of the exception being handled (call inside a catch block), or "unknown
// exception" when it is not a std::exception.
inline std::string current_exception_what() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace mpp::detail
