// Internal invariants: MOEDIST_CHECK stays on in release builds and aborts with the location.
#pragma once

#include "moedist/status.h"

namespace moedist::util {
[[noreturn]] void checkFailed(const char* expr, const char* file, int line);
}  // namespace moedist::util

#define MOEDIST_CHECK(cond)                                               \
  do {                                                                    \
    if (!(cond)) ::moedist::util::checkFailed(#cond, __FILE__, __LINE__); \
  } while (0)

// Returns the Status of `expr` from the enclosing function if it is not ok.
#define MOEDIST_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::moedist::Status moedist_status_ = (expr);        \
    if (!moedist_status_.ok()) return moedist_status_; \
  } while (0)
