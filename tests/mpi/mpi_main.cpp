// main() of the tests that run under mpirun (the MPI engine, the MPI end-to-end tests): one GoogleTest run per
// process of the job. MPI is initialized before GoogleTest, because the test lists depend on the number of
// processes (generators run in InitGoogleTest).
// Process 0 prints the usual report; the others print only their failures, tagged with the process. The exit code
// is the same on every process: nonzero when any process failed a test.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

namespace {

// The failures of one process other than 0, each with the process's number, so that mpirun's merged output says
// where they happened.
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int process) : process_(process) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::printf("[process %d] %s:%d: Failure\n%s\n", process_, result.file_name() ? result.file_name() : "?",
                result.line_number(), result.message());
    std::fflush(stdout);
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (!info.result()->Failed()) return;
    std::printf("[process %d] FAILED %s.%s\n", process_, info.test_suite_name(), info.name());
    std::fflush(stdout);
  }

 private:
  int process_;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int process = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &process);
  if (provided < MPI_THREAD_MULTIPLE) {
    // The harness runs each rank's calls on a thread of their own (the rank launcher's watchdog).
    std::fprintf(stderr, "[process %d] MPI_Init_thread: MPI_THREAD_MULTIPLE not provided (got %d)\n", process,
                 provided);
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (process != 0) {
    ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(process));
  }
  const int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int anyFailed = 0;
  MPI_Allreduce(&failed, &anyFailed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return anyFailed;
}
