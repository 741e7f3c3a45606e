#include "switchboard/testing/process.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "switchboard/testing/servers.hpp"

extern char** environ;

namespace sb::testing {
namespace {
int decode(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
}  // namespace

ChildProcess::ChildProcess(const std::string& program, const std::vector<std::string>& args,
                           const std::map<std::string, std::string>& env) {
  const char* tmp = std::getenv("TMPDIR");
  output_file_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + unique_name("child") + ".log";
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  int out = ::open(output_file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) throw std::runtime_error("cannot create " + output_file_);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The test runner may block SIGTERM/SIGINT (the Lifecycle does): the child
    // starts with a clean mask, as it would from a shell.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    ::execve(program.c_str(), argv.data(), envp.data());
    std::fprintf(stderr, "execve %s: %s\n", program.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(out);
}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
  std::remove(output_file_.c_str());
}

void ChildProcess::signal(int sig) const {
  // Once reaped, the pid may belong to another process: never signal it.
  if (status_) return;
  if (::kill(pid_, sig) != 0) throw std::runtime_error("kill failed");
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds deadline) {
  if (status_) return status_;
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = decode(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool ChildProcess::running() {
  return !wait(std::chrono::milliseconds(0)).has_value();
}

std::string ChildProcess::output() const {
  std::ifstream in(output_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A random port below the kernel's ephemeral range (32768+ by default) that
// binds now: a port from bind(0) is ephemeral, and an outgoing connection
// may take it as its source port before the process under test binds it.
// Servers on free ports come and go in parallel tests, so several tries.
int free_port() {
  static std::mutex mu;
  static std::mt19937 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  for (int attempt = 0; attempt < 500; ++attempt) {
    const int port = std::uniform_int_distribution<int>(10000, 32000)(rng);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("free_port: socket failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (ok) return port;
  }
  throw std::runtime_error("free_port: no free port in 10000..32000");
}

std::string built_binary(const std::string& relative) {
  const char* d = std::getenv("SB_BINARY_DIR");
  if (d == nullptr) throw std::runtime_error("SB_BINARY_DIR is not set (run through ctest)");
  return std::string(d) + "/" + relative;
}

HttpResult http_get(int port, const std::string& path, std::chrono::milliseconds timeout) {
  httplib::Client cli("127.0.0.1", port);
  auto secs = static_cast<time_t>(timeout.count() / 1000);
  auto usecs = static_cast<time_t>((timeout.count() % 1000) * 1000);
  cli.set_connection_timeout(secs, usecs);
  cli.set_read_timeout(secs, usecs);
  auto r = cli.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body};
}

}  // namespace sb::testing
