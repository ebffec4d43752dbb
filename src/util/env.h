// Every environment variable moedist reads is read here, in one place.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace moedist::util {

// MOEDIST_TIMEOUT_MS (milliseconds) wins over HCCL_EXEC_TIMEOUT (seconds); both absent: nullopt.
std::optional<std::chrono::milliseconds> envTimeout();
// MOEDIST_KERNEL_THREADS; absent or invalid: nullopt.
std::optional<int> envKernelThreads();
// HCCL_CONNECT_TIMEOUT (seconds), CANN's deadline for setting up a communicator; absent or invalid: 120 s.
std::chrono::milliseconds envConnectTimeout();
// HCCL_BUFFSIZE in MB (CANN's window size per communicator); absent: 200.
long envHcclBuffSizeMb();
// MOEDIST_KERNELS: name of the kernel table to use ("ref", "cpu"); absent: empty.
std::string envKernelTable();

// MOEDIST_INPROC_COPY=1: in-process engines hide their peer mappings, so core copies through read() (tests).
bool envInprocCopy();
// MOEDIST_MPI_SHM=0: MPI engines use no shared-memory window; every peer is read through messages, as across hosts.
bool envMpiSharedMemory();
// MOEDIST_PUSH=0: no rank has its rows pushed to it; a rank that cannot map a peer reads through read() (A/B runs,
// and the tests of that path).
bool envPush();

}  // namespace moedist::util
