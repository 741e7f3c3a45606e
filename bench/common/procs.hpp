#pragma once
// Process handling shared by the benchmarks that run the platform's own
// processes (bench_edge, bench_events): stop signals, children in their own
// process groups with their output in log files, a program run to its end
// with its output captured, and the stack of every child of a run.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace sb::bench {

// ------------------------------------------------------------------ signals

/// Set by the handler of install_stop_handlers() (SIGINT, SIGTERM, SIGHUP).
extern volatile std::sig_atomic_t g_stop;
/// A program run in the foreground (run_capture, e.g. a wrk run): its process
/// group is sent SIGTERM at once on a signal.
extern std::atomic<pid_t> g_foreground;

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// Throws Interrupted once a stop signal came.
void check_stop();

/// SIGINT, SIGTERM and SIGHUP set g_stop (and stop the foreground program);
/// SIGPIPE is ignored.
void install_stop_handlers();

// ------------------------------------------------------------------ helpers

/// The first three fields of /proc/loadavg.
std::string loadavg();

/// A port nothing listens on now (bound to 0 and closed: a small race we
/// accept).
int free_port();

/// `n` random lowercase hex digits.
std::string random_hex(std::size_t n);

/// A new folder $TMPDIR/sb-bench-`name`.XXXXXX (/tmp without TMPDIR).
std::string make_work_dir(const std::string& name);

/// The last `max_lines` lines of a file, each indented and cut at 400
/// characters.
std::string tail_of_file(const std::string& path, std::size_t max_lines);

// ------------------------------------------------------------------ processes

/// A child process in its own process group (so a terminal's ^C reaches only
/// us, and stopping it stops its own children too), output into a log file,
/// killed by the kernel if we die. Stopped (TERM, then KILL) on destruction.
/// Its environment is ours without any SB_* key, plus exactly `env`.
class Child {
 public:
  Child(std::string label, std::vector<std::string> argv, std::map<std::string, std::string> env,
        std::string log_path);
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running();
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(10)) noexcept;

  std::string describe_exit() const;
  const std::string& label() const { return label_; }
  const std::string& log() const { return log_; }
  pid_t pid() const { return pid_; }

 private:
  std::string label_;
  std::string log_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

struct Captured {
  int status = -1;
  std::string output;  // stdout and stderr
};

/// Runs a program to its end (killed after `timeout`, or on a stop signal:
/// then throws Interrupted), capturing its output. The environment is built
/// as for a Child.
Captured run_capture(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                     std::chrono::seconds timeout);

/// A super_admin JWT (subject and tenant "bench") from `sb_edge token` run
/// with `env`: the last non-empty line of its output. Throws on failure.
std::string mint_jwt(const std::string& sb_edge, const std::map<std::string, std::string>& env);

/// Every process of the run; stopped in reverse order of start.
class Stack {
 public:
  explicit Stack(std::string dir) : dir_(std::move(dir)) {}
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  /// Starts `argv` with its output in `log_name` of the stack's folder.
  Child& start(const std::string& label, std::vector<std::string> argv,
               std::map<std::string, std::string> env, const std::string& log_name);

  /// Throws naming the first child that is gone.
  void check_alive();

  /// Polls `pred` every 100 ms until it holds; throws after `timeout`, when a
  /// child died, or when interrupted.
  void wait_until(const std::string& what, std::chrono::milliseconds timeout,
                  const std::function<bool()>& pred);

  /// The warnings and errors each process logged (they run at level warn),
  /// grouped by message, one example each; labels padded to `label_width`.
  void print_log_summary(int label_width);

  void print_log_tails();

 private:
  std::string dir_;
  std::vector<std::unique_ptr<Child>> children_;
};

/// Runs `body` with a Stack of children in `dir`, every child stopped after
/// it, also on failure or interruption; then removes `dir` unless `keep` (then
/// names it). Returns 0, 130 when interrupted, or 1 when `body` threw (after
/// the message and each child's log tail on stderr).
int run_with_stack(const std::string& dir, bool keep, const std::function<void(Stack&)>& body);

}  // namespace sb::bench
