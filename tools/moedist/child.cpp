#include "child.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace moedist::tool {

std::string commandLine(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_of(" \t\"'$\\*?;&|<>()") == std::string::npos;
    out += plain ? a : "'" + a + "'";
  }
  return out;
}

ChildResult runChild(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                     const std::string& logPath, std::chrono::seconds timeout) {
  ChildResult result;
  if (argv.empty()) {
    result.error = "no program";
    return result;
  }
  const int log = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    result.error = "cannot open " + logPath + ": " + std::strerror(errno);
    return result;
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int ready[2];  // closed on exec; a failed exec writes its errno
  if (::pipe2(ready, O_CLOEXEC) != 0) {
    result.error = std::string("pipe: ") + std::strerror(errno);
    ::close(log);
    return result;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(log, STDOUT_FILENO);
    ::dup2(log, STDERR_FILENO);
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    ::execvp(args[0], args.data());
    const int e = errno;
    [[maybe_unused]] ssize_t n = ::write(ready[1], &e, sizeof e);
    ::_exit(127);
  }
  ::close(ready[1]);
  ::close(log);
  if (pid < 0) {
    result.error = std::string("fork: ") + std::strerror(errno);
    ::close(ready[0]);
    return result;
  }
  int execErrno = 0;
  if (::read(ready[0], &execErrno, sizeof execErrno) == sizeof execErrno)
    result.error = "cannot run " + argv[0] + ": " + std::strerror(execErrno);
  ::close(ready[0]);

  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (auto pause = std::chrono::milliseconds(1);; pause = std::min(pause * 2, std::chrono::milliseconds(100))) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status) && result.error.empty()) result.exitCode = WEXITSTATUS(status);
      if (WIFSIGNALED(status) && result.error.empty())
        result.error = std::string("killed by signal ") + ::strsignal(WTERMSIG(status));
      ::kill(-pid, SIGKILL);  // whatever the program left behind in its group
      return result;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      result.timedOut = true;
      result.error = "still running after " + std::to_string(timeout.count()) + " s: killed";
      return result;
    }
    std::this_thread::sleep_for(pause);
  }
}

}  // namespace moedist::tool
