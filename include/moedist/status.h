// moedist: status codes returned by every fallible call of the library.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace moedist {

// What went wrong. The comments give the aclnn code the CANN-compatible C API maps each one to.
enum class StatusCode : int {
  kOk = 0,
  kNullArgument = 1,     // a required tensor or string is missing                       (161001)
  kInvalidArgument = 2,  // wrong dtype or format, or bad data found while running        (161002)
  kInvalidValue = 3,     // a shape or attribute value outside the supported range       (561002)
  kTimeout = 4,          // a peer rank was not heard from before the deadline           (361001)
  kInternal = 5,         // a broken invariant inside moedist: please report it          (561000)
};

const char* toString(StatusCode code);
// The aclnn code of `code`, as in the comments above (0 for kOk); an unknown value gives 561000.
int32_t aclnnCode(StatusCode code);

// The result of a fallible call: a code and a message that names the operator, the argument or rank, and
// what was expected versus what was found.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "kInvalidValue: DispatchV3: expertIds.dim1 (K) is 17, expected 1..16"
  std::string toString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status okStatus() {
  return Status();
}

}  // namespace moedist
