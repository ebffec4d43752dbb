// The moedist._C extension: the parts the binding's files share. The extension uses the public C++ API only
// (include/moedist/); everything numpy-level (allocating outputs, dtype names, out= checks) is done in Python
// (python/moedist/_ops.py), which hands this module ready arrays and the C++ argument names.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "moedist/communicator.h"
#include "moedist/status.h"

namespace moedist::python {

namespace py = pybind11;

// Raises moedist.Error (code, status, message) for a failed status. Needs the GIL.
[[noreturn]] void raiseStatus(const Status& status);

// Raises moedist.Error unless `status` is ok. Needs the GIL.
inline void check(const Status& status) {
  if (!status.ok()) raiseStatus(status);
}

// The handle of rank `rank` of the live communicator `name` in this process; raises moedist.Error when there is none.
Communicator findCommunicator(const std::string& name, int64_t rank, const char* argument);

// CommOptions from the keyword arguments every group constructor takes (timeout in seconds; None or 0: the
// environment's default).
CommOptions commOptions(const py::object& name, const py::object& timeoutSeconds, int kernelThreads,
                        const std::string& kernels);

// Keeps a rank's handle alive until destroyGroup(name) or the interpreter exits.
void keepGroup(const std::string& name, std::vector<Communicator> handles);

void registerErrors(py::module_& m);
void registerGroups(py::module_& m);
void registerOps(py::module_& m);
void registerMpi(py::module_& m);

}  // namespace moedist::python
