#include "api/guard.h"

#include <exception>
#include <new>
#include <string>

namespace moedist::api {

Status currentExceptionStatus(std::string_view fn) noexcept {
  // Building the message allocates too; when even that fails, the code alone has to do.
  try {
    try {
      throw;
    } catch (const std::bad_alloc&) {
      return Status(StatusCode::kInternal, std::string(fn) + ": out of memory (std::bad_alloc)");
    } catch (const std::exception& e) {
      return Status(StatusCode::kInternal, std::string(fn) + ": unexpected exception: " + e.what());
    } catch (...) {
      return Status(StatusCode::kInternal, std::string(fn) + ": unexpected exception of unknown type");
    }
  } catch (...) {
    return Status(StatusCode::kInternal, std::string());
  }
}

}  // namespace moedist::api
