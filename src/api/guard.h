// The catch-all guard of every exported function of the C++ API: nothing thrown inside moedist (std::bad_alloc
// above all) crosses the API boundary. A function that returns a Status returns the exception as one, naming the
// function; any other function returns the fallback value it names.
#pragma once

#include <string_view>
#include <type_traits>
#include <utility>

#include "moedist/status.h"

namespace moedist::api {

// The Status for the exception being handled; call it only inside a catch block. std::bad_alloc gives kInternal
// "<fn>: out of memory (std::bad_alloc)", any other exception kInternal with its what().
Status currentExceptionStatus(std::string_view fn) noexcept;

template <class Body>
Status guard(std::string_view fn, Body&& body) noexcept {
  static_assert(std::is_same_v<std::invoke_result_t<Body>, Status>, "guard(fn, body): body returns a Status");
  try {
    return std::forward<Body>(body)();
  } catch (...) {
    return currentExceptionStatus(fn);
  }
}

template <class T, class Body>
T guardOr(T fallback, Body&& body) noexcept {
  try {
    return std::forward<Body>(body)();
  } catch (...) {
    return fallback;
  }
}

}  // namespace moedist::api
