// Runs a program as a child process with a deadline: `moedist bench` runs every engine and baseline this way, so
// that each gets its own memory (peak RSS per run) and a run that hangs is killed, never waited for.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace moedist::tool {

struct ChildResult {
  int exitCode = -1;      // the program's exit code; -1 when it was killed or did not start
  bool timedOut = false;  // killed at the deadline (with its whole process group)
  std::string error;      // why it did not start or did not end, in words; empty when it exited
};

// Runs argv (argv[0] looked up on PATH) with `env` added to this process's environment, its stdout and stderr
// appended to `logPath`, in a process group of its own. Waits at most `timeout`, then kills the group.
ChildResult runChild(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                     const std::string& logPath, std::chrono::seconds timeout);

// The command line, quoted where needed, for messages and logs.
std::string commandLine(const std::vector<std::string>& argv);

}  // namespace moedist::tool
