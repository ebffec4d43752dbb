// Helpers shared by the runtime's C entry points (internal to src/compat).
#pragma once

#include <cstring>
#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "compat/runtime.h"

namespace moedist::compat {

// Records `message` as the calling thread's recent error and returns `code`.
aclError fail(aclError code, const std::string& message);

// The integer an enum argument from C holds. C may pass any value of the enum's integer type, and loading a value
// outside the enumerators' range as the C++ enum type is undefined, so entry points read such arguments with this
// (a byte copy, no load of the enum type) and convert them back only when they are known enumerators.
template <class E>
std::underlying_type_t<E> rawEnum(const E& e) {
  std::underlying_type_t<E> v;
  static_assert(sizeof v == sizeof e);
  std::memcpy(&v, &e, sizeof v);
  return v;
}

// Runs `body` and returns its result; an exception (which must not cross the C boundary) becomes `onException`,
// with a recent error that names `fn`.
template <class R, class F>
R guarded(const char* fn, F&& body, R onException) {
  try {
    return std::forward<F>(body)();
  } catch (const std::exception& e) {
    try {
      setRecentError(std::string(fn) + ": internal error: " + e.what());
    } catch (...) {
    }
  } catch (...) {
    try {
      setRecentError(std::string(fn) + ": internal error");
    } catch (...) {
    }
  }
  return onException;
}

}  // namespace moedist::compat
