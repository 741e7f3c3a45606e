#pragma once
// Runs one of the platform's programs as a child process for end-to-end
// tests: explicit environment, output captured to a file, signals, and waits
// with deadlines. The destructor kills a child that is still running.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sb::testing {

class ChildProcess {
 public:
  /// Starts `program` with `args`; the child's environment is this process's
  /// plus `env` (which wins).
  ChildProcess(const std::string& program, const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  void signal(int sig) const;
  /// The exit code (128 + signal for a signal death), or nullopt if the child
  /// is still running at the deadline.
  std::optional<int> wait(std::chrono::milliseconds deadline);
  bool running();
  /// Everything the child wrote to stdout and stderr so far.
  std::string output() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_file_;
};

/// A port that was free a moment ago (bind to 0, read, close).
int free_port();

/// Path of a binary built by this build tree (relative to SB_BINARY_DIR).
std::string built_binary(const std::string& relative);

/// A tiny blocking HTTP GET for tests: status code (0 = no connection) and body.
struct HttpResult {
  int status = 0;
  std::string body;
};
HttpResult http_get(int port, const std::string& path,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace sb::testing
