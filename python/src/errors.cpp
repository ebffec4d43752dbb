// moedist.Error: a failed Status as a Python exception, with the aclnn code CANN would return.
#include <limits>

#include "binding.h"

namespace moedist::python {

namespace {

// moedist.Error, created once in registerErrors (the module lives until the interpreter exits).
PyObject* errorType = nullptr;

const char* statusName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return "kOk";
    case StatusCode::kNullArgument:
      return "kNullArgument";
    case StatusCode::kInvalidArgument:
      return "kInvalidArgument";
    case StatusCode::kInvalidValue:
      return "kInvalidValue";
    case StatusCode::kTimeout:
      return "kTimeout";
    case StatusCode::kInternal:
      return "kInternal";
  }
  return "kInternal";
}

}  // namespace

void raiseStatus(const Status& status) {
  py::object type = py::reinterpret_borrow<py::object>(errorType);
  py::object error = type(status.message());
  error.attr("code") = aclnnCode(status.code());
  error.attr("status") = statusName(status.code());
  PyErr_SetObject(errorType, error.ptr());
  throw py::error_already_set();
}

Communicator findCommunicator(const std::string& name, int64_t rank, const char* argument) {
  if (rank < 0 || rank > std::numeric_limits<int>::max())
    check(Status(StatusCode::kInvalidValue, std::string(argument) + ": rank " + std::to_string(rank) +
                                                " is out of range, expected 0.." +
                                                std::to_string(std::numeric_limits<int>::max())));
  Communicator comm;
  check(Communicator::find(name, static_cast<int>(rank), &comm));
  return comm;
}

void registerErrors(py::module_& m) {
  py::dict attrs;
  attrs["__doc__"] =
      "An error of a moedist operator or communicator.\n\n"
      "code: the aclnn code CANN returns for it (161001 a required argument is missing, 161002 a wrong dtype or\n"
      "bad data, 561002 a shape or attribute out of range, 361001 a peer rank not heard from, 561000 internal).\n"
      "status: moedist's StatusCode name ('kInvalidValue', 'kTimeout', ...).\n"
      "The message names the operator, the argument or rank, and what was expected versus found.";
  attrs["code"] = 0;
  attrs["status"] = "kOk";
  errorType = PyErr_NewException("moedist.Error", PyExc_RuntimeError, attrs.ptr());
  if (errorType == nullptr) throw py::error_already_set();
  m.add_object("Error", py::reinterpret_borrow<py::object>(errorType));
}

}  // namespace moedist::python
