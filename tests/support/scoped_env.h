// Sets an environment variable for one scope and restores its previous state (value, or unset) afterwards. Tests
// use it for the variables moedist reads when a communicator is created or an argument is checked.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace moedist::testing {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace moedist::testing
