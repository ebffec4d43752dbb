// The operating-system pieces of the shared-memory engine; shm_os.h describes them.
#include "comm/shm/shm_os.h"

#include <errno.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace moedist::comm::shm {

namespace {

std::string errnoText(int e) {
  return std::strerror(e);
}

uint64_t namespaceInode(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// Fields 3 (state) and 22 (start time) of /proc/<pid>/stat; false when it cannot be read.
bool readStat(int32_t pid, char* state, uint64_t* startTime) {
  const std::string path = fmt::format("/proc/{}/stat", pid);
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return false;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may contain anything: parse after the last ')'.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return false;
  std::istringstream in(p + 1);
  std::string field;
  in >> *state;
  for (int i = 4; i <= 21 && in >> field; ++i) {
  }
  return static_cast<bool>(in >> *startTime);
}

}  // namespace

Status hostIdentity(HostIdentity* out) {
  std::ifstream boot("/proc/sys/kernel/random/boot_id");
  if (!(boot >> out->bootId))
    return Status(StatusCode::kInternal, "the shared-memory engine needs /proc/sys/kernel/random/boot_id (Linux)");
  struct stat st {};
  if (::stat("/dev/shm", &st) != 0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("the shared-memory engine needs /dev/shm: {}", errnoText(errno)));
  out->shmDev = static_cast<uint64_t>(st.st_dev);
  out->shmIno = static_cast<uint64_t>(st.st_ino);
  out->ipcNs = namespaceInode("/proc/self/ns/ipc");
  out->pidNs = namespaceInode("/proc/self/ns/pid");
  return okStatus();
}

std::string identityMismatch(const HostIdentity& self, const HostIdentity& creator) {
  if (self.bootId != creator.bootId)
    return fmt::format("the id was created on another host (boot id {}, this host's is {})", creator.bootId,
                       self.bootId);
  if (self.shmDev != creator.shmDev || self.shmIno != creator.shmIno)
    return "the id was created in another container (its /dev/shm is not this process's /dev/shm)";
  if (self.ipcNs != creator.ipcNs) return "the id was created in another container (another IPC namespace)";
  if (self.pidNs != creator.pidNs)
    return "the id was created in another container (another PID namespace, where process ids mean other processes)";
  return {};
}

ProcessId selfProcess() {
  ProcessId p;
  p.pid = static_cast<int32_t>(::getpid());
  char state = 0;
  readStat(p.pid, &state, &p.startTime);
  return p;
}

bool processAlive(const ProcessId& p, std::string* why) {
  char state = 0;
  uint64_t start = 0;
  if (!readStat(p.pid, &state, &start)) {
    *why = fmt::format("its process {} has exited", p.pid);
    return false;
  }
  if (state == 'Z' || state == 'X') {
    *why = fmt::format("its process {} has exited", p.pid);
    return false;
  }
  if (p.startTime != 0 && start != p.startTime) {
    *why = fmt::format("its process {} has exited (the pid is another process's now)", p.pid);
    return false;
  }
  return true;
}

Mapping::~Mapping() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Status Mapping::create(const std::string& name, size_t bytes, Mapping* out) {
  const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int e = errno;
    return Status(e == EEXIST ? StatusCode::kInvalidArgument : StatusCode::kInternal,
                  fmt::format("shm_open({}) failed: {}", name, errnoText(e)));
  }
  ::fchmod(fd, 0600);  // whatever the umask
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int e = errno;
    ::close(fd);
    ::shm_unlink(name.c_str());
    return Status(StatusCode::kInternal,
                  fmt::format("ftruncate of {} to {} bytes failed: {}", name, bytes, errnoText(e)));
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    ::shm_unlink(name.c_str());
    return Status(StatusCode::kInternal, fmt::format("mmap of {} ({} bytes) failed: {}", name, bytes, errnoText(e)));
  }
  Mapping m;
  m.data_ = static_cast<std::byte*>(p);
  m.size_ = bytes;
  *out = std::move(m);
  return okStatus();
}

Status Mapping::open(const std::string& name, Mapping* out, int* errnoOut) {
  *errnoOut = 0;
  const int fd = ::shm_open(name.c_str(), O_RDWR | O_CLOEXEC, 0);
  if (fd < 0) {
    *errnoOut = errno;
    return Status(StatusCode::kInvalidArgument, fmt::format("shm_open({}) failed: {}", name, errnoText(errno)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size <= 0) {
    *errnoOut = st.st_size <= 0 ? EAGAIN : errno;
    ::close(fd);
    return Status(StatusCode::kInvalidArgument, fmt::format("{} is not ready yet", name));
  }
  const auto bytes = static_cast<size_t>(st.st_size);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  ::close(fd);
  if (p == MAP_FAILED) {
    *errnoOut = e;
    return Status(StatusCode::kInternal, fmt::format("mmap of {} ({} bytes) failed: {}", name, bytes, errnoText(e)));
  }
  Mapping m;
  m.data_ = static_cast<std::byte*>(p);
  m.size_ = bytes;
  *out = std::move(m);
  return okStatus();
}

void unlinkName(const std::string& name) {
  ::shm_unlink(name.c_str());
}

void futexWait(std::atomic<uint32_t>* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futexWakeAll(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

Status randomHex(size_t bytes, std::string* out) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    const ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(StatusCode::kInternal, fmt::format("getrandom failed: {}", errnoText(errno)));
    }
    got += static_cast<size_t>(n);
  }
  out->clear();
  for (char c : raw) *out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return okStatus();
}

}  // namespace moedist::comm::shm
