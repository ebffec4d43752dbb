// MPI groups (built when moedist has its MPI engine): createMpiCommunicator over an mpi4py communicator (passed as
// its Fortran handle, comm.py2f()), or, without mpi4py, over MPI_COMM_WORLD or some of its ranks. When nobody has
// initialized MPI, the extension does, with MPI_THREAD_MULTIPLE (operators run with the GIL released, so other
// threads of the process may use MPI meanwhile), and finalizes it at exit after destroying its groups.
#include <pybind11/stl.h>

#include "binding.h"

#ifdef MOEDIST_WITH_MPI
#include "moedist/mpi.h"
#endif

namespace moedist::python {

#ifdef MOEDIST_WITH_MPI

namespace {

constexpr int kCreateGroupTag = 0x3E00;  // tags MPI_Comm_create_group's own messages
bool initializedHere = false;            // this extension called MPI_Init_thread, so it calls MPI_Finalize

bool isInitialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  return initialized != 0;
}

bool isFinalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

void checkMpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  check(
      Status(StatusCode::kInternal, std::string(what) + " failed: " + std::string(text, static_cast<size_t>(length))));
}

// Initializes MPI with MPI_THREAD_MULTIPLE unless it is already; returns the thread level MPI provides.
int ensureInitialized() {
  if (isFinalized()) check(Status(StatusCode::kInvalidArgument, "MPI: MPI_Finalize has been called already"));
  int provided = 0;
  if (!isInitialized()) {
    py::gil_scoped_release release;
    checkMpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    initializedHere = true;
  } else {
    MPI_Query_thread(&provided);
  }
  return provided;
}

py::tuple world() {
  ensureInitialized();
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return py::make_tuple(rank, size);
}

// The communicator of `ranks` of MPI_COMM_WORLD (collective over those ranks only); MPI_COMM_NULL when this process
// is not one of them.
MPI_Comm subCommunicator(const std::vector<int>& ranks) {
  MPI_Group worldGroup = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
  checkMpi(MPI_Comm_group(MPI_COMM_WORLD, &worldGroup), "MPI_Comm_group");
  const int rc = MPI_Group_incl(worldGroup, static_cast<int>(ranks.size()), ranks.data(), &group);
  MPI_Group_free(&worldGroup);
  checkMpi(rc, "MPI_Group_incl");
  int member = MPI_UNDEFINED;
  MPI_Group_rank(group, &member);
  MPI_Comm comm = MPI_COMM_NULL;
  int createRc = MPI_SUCCESS;
  if (member != MPI_UNDEFINED) {
    py::gil_scoped_release release;  // collective over the members
    createRc = MPI_Comm_create_group(MPI_COMM_WORLD, group, kCreateGroupTag, &comm);
  }
  MPI_Group_free(&group);
  checkMpi(createRc, "MPI_Comm_create_group");
  return comm;
}

std::string createMpi(const py::object& fortranHandle, const py::object& ranks, const py::object& name,
                      const py::object& timeout, int kernelThreads, const std::string& kernels) {
  const CommOptions options = commOptions(name, timeout, kernelThreads, kernels);
  MPI_Comm base = MPI_COMM_WORLD;
  MPI_Comm owned = MPI_COMM_NULL;  // created here from `ranks`, freed after the communicator duplicated it
  if (!fortranHandle.is_none()) {
    if (!isInitialized() || isFinalized())
      check(Status(StatusCode::kInvalidArgument, "create_mpi_group: comm is given but MPI is not initialized"));
    base = MPI_Comm_f2c(static_cast<MPI_Fint>(fortranHandle.cast<int64_t>()));
  } else {
    ensureInitialized();
    if (!ranks.is_none()) {
      const auto list = ranks.cast<std::vector<int>>();
      int worldSize = 0;
      MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
      for (size_t i = 0; i < list.size(); ++i)
        if (list[i] < 0 || list[i] >= worldSize)
          throw py::value_error("ranks[" + std::to_string(i) + "]: " + std::to_string(list[i]) +
                                " is not a rank of MPI_COMM_WORLD (0.." + std::to_string(worldSize - 1) + ")");
      owned = subCommunicator(list);
      if (owned == MPI_COMM_NULL)
        throw py::value_error("ranks: this process (MPI_COMM_WORLD rank " + std::to_string(py::cast<int>(world()[0])) +
                              ") is not one of them");
      base = owned;
    }
  }
  Communicator comm;
  Status status;
  {
    py::gil_scoped_release release;  // collective over `base`
    status = createMpiCommunicator(base, options, &comm);
    if (owned != MPI_COMM_NULL) MPI_Comm_free(&owned);
  }
  check(status);
  std::string created = comm.name();
  keepGroup(created, {comm});
  return created;
}

bool finalizeIfOwned() {
  if (!initializedHere || !isInitialized() || isFinalized()) return false;
  py::gil_scoped_release release;
  MPI_Finalize();
  return true;
}

}  // namespace

void registerMpi(py::module_& m) {
  using py::arg;
  m.attr("mpi_available") = true;
  m.def("mpi_initialized", [] { return isInitialized() && !isFinalized(); });
  m.def("mpi_init", &ensureInitialized, "Initializes MPI (MPI_THREAD_MULTIPLE) unless it is; the thread level.");
  m.def("mpi_world", &world, "(rank, size) in MPI_COMM_WORLD; initializes MPI when needed.");
  m.def("create_mpi_group", &createMpi, arg("comm"), arg("ranks"), arg("name"), arg("timeout"), arg("kernel_threads"),
        arg("kernels"));
  m.def("mpi_finalize_if_owned", &finalizeIfOwned);
}

#else

void registerMpi(py::module_& m) {
  m.attr("mpi_available") = false;
}

#endif

}  // namespace moedist::python
