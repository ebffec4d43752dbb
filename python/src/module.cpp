// moedist._C: the extension module of the Python package. See binding.h.
#include "binding.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "moedist's C++ API for the Python package (use the functions of the moedist package instead)";
  moedist::python::registerErrors(m);
  moedist::python::registerGroups(m);
  moedist::python::registerOps(m);
  moedist::python::registerMpi(m);
}
