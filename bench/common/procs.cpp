#include "procs.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>
#include <utility>

extern char** environ;

namespace sb::bench {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------ signals

volatile std::sig_atomic_t g_stop = 0;
std::atomic<pid_t> g_foreground{0};

namespace {

extern "C" void on_signal(int) {
  g_stop = 1;
  const pid_t p = g_foreground.load();
  if (p > 0) kill(-p, SIGTERM);
}

std::vector<std::string> child_env(const std::map<std::string, std::string>& extra) {
  // No SB_* from our own environment leaks into a child: it gets exactly
  // the keys given here.
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv = *e;
    if (kv.rfind("SB_", 0) == 0) continue;
    out.emplace_back(kv);
  }
  for (const auto& [k, v] : extra) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

void check_stop() {
  if (g_stop != 0) throw Interrupted();
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

// ------------------------------------------------------------------ helpers

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

int free_port() {
  const int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  close(s);
  if (!ok) throw std::runtime_error("no free port");
  return ntohs(a.sin_port);
}

std::string random_hex(std::size_t n) {
  static const char* digits = "0123456789abcdef";
  static std::mt19937_64 rng(std::random_device{}());
  std::string out;
  out.reserve(n);
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 16 == 0) bits = rng();
    out += digits[bits & 15u];
    bits >>= 4;
  }
  return out;
}

std::string make_work_dir(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/sb-bench-" + name + ".XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

std::string tail_of_file(const std::string& path, std::size_t max_lines) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() > 400) line = line.substr(0, 400) + "...";
    lines.push_back(line);
  }
  std::string out;
  const std::size_t from = lines.size() > max_lines ? lines.size() - max_lines : 0;
  for (std::size_t i = from; i < lines.size(); ++i) out += "    " + lines[i] + "\n";
  return out;
}

// ------------------------------------------------------------------ processes

Child::Child(std::string label, std::vector<std::string> argv,
             std::map<std::string, std::string> env, std::string log_path)
    : label_(std::move(label)), log_(std::move(log_path)) {
  auto envs = child_env(env);
  auto cargv = c_strings(argv);
  auto cenv = c_strings(envs);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed for " + label_);
  if (pid_ == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
}

bool Child::running() {
  if (exited_) return false;
  int st = 0;
  const pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = st;
    kill(-pid_, SIGKILL);  // whatever it left behind in its group
    return false;
  }
  return true;
}

void Child::stop(std::chrono::milliseconds grace) noexcept {
  if (!running()) return;
  kill(-pid_, SIGTERM);
  const auto end = Clock::now() + grace;
  while (Clock::now() < end) {
    if (!running()) return;
    std::this_thread::sleep_for(20ms);
  }
  std::fprintf(stderr, "%s: %s did not stop within %lld ms: killed\n",
               program_invocation_short_name, label_.c_str(),
               static_cast<long long>(grace.count()));
  kill(-pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  exited_ = true;
  status_ = st;
}

std::string Child::describe_exit() const {
  if (WIFEXITED(status_)) return "exited with status " + std::to_string(WEXITSTATUS(status_));
  if (WIFSIGNALED(status_)) return "killed by signal " + std::to_string(WTERMSIG(status_));
  return "gone";
}

Captured run_capture(std::vector<std::string> argv, const std::map<std::string, std::string>& env,
                     std::chrono::seconds timeout) {
  auto envs = child_env(env);
  auto cargv = c_strings(argv);
  auto cenv = c_strings(envs);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed for " + argv[0]);
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    const int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  setpgid(pid, pid);
  g_foreground = pid;
  if (g_stop != 0) kill(-pid, SIGTERM);
  close(fds[1]);
  Captured out;
  const auto end = Clock::now() + timeout;
  bool killed = false;
  char buf[4096];
  while (true) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 200) > 0) {
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n <= 0) break;
      out.output.append(buf, static_cast<std::size_t>(n));
    }
    if (!killed && (Clock::now() > end || g_stop != 0)) {
      kill(-pid, SIGKILL);
      killed = true;
    }
  }
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  g_foreground = 0;
  check_stop();
  if (killed) throw std::runtime_error(argv[0] + " did not finish in time");
  out.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

std::string mint_jwt(const std::string& sb_edge, const std::map<std::string, std::string>& env) {
  const auto token = run_capture(
      {sb_edge, "token", "--sub", "bench", "--tenant", "bench", "--roles", "super_admin"}, env,
      30s);
  std::string jwt;  // the last non-empty line of its output
  std::istringstream lines(token.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (!line.empty()) jwt = line;
  }
  if (token.status != 0 || jwt.empty()) {
    throw std::runtime_error("sb-edge token failed: " + token.output);
  }
  return jwt;
}

// ------------------------------------------------------------------ the stack

Stack::~Stack() {
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) (*it)->stop();
}

Child& Stack::start(const std::string& label, std::vector<std::string> argv,
                    std::map<std::string, std::string> env, const std::string& log_name) {
  if (!std::filesystem::exists(argv[0])) {
    throw std::runtime_error(label + ": no binary at " + argv[0]);
  }
  children_.push_back(
      std::make_unique<Child>(label, std::move(argv), std::move(env), dir_ + "/" + log_name));
  return *children_.back();
}

void Stack::check_alive() {
  for (auto& c : children_) {
    if (!c->running()) {
      throw std::runtime_error(c->label() + " " + c->describe_exit() + "; its log:\n" +
                               tail_of_file(c->log(), 30));
    }
  }
}

void Stack::wait_until(const std::string& what, std::chrono::milliseconds timeout,
                       const std::function<bool()>& pred) {
  const auto end = Clock::now() + timeout;
  while (true) {
    check_stop();
    check_alive();
    if (pred()) return;
    if (Clock::now() >= end) {
      throw std::runtime_error("timed out after " + std::to_string(timeout.count()) +
                               " ms waiting for " + what);
    }
    std::this_thread::sleep_for(100ms);
  }
}

void Stack::print_log_summary(int label_width) {
  for (auto& c : children_) {
    std::ifstream f(c->log());
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(f, line)) {
      if (!line.empty()) lines.push_back(line);
    }
    std::printf("  %-*s %zu log lines at warn or above\n", label_width, c->label().c_str(),
                lines.size());
    // Grouped by message (JSON lines: "msg":"..."), one example each.
    std::map<std::string, std::pair<std::size_t, std::string>> by_msg;
    std::vector<std::string> order;
    for (const auto& l : lines) {
      std::string key = l;
      const auto at = l.find("\"msg\":\"");
      if (at != std::string::npos) key = l.substr(at + 7, l.find('"', at + 7) - at - 7);
      auto& e = by_msg[key];
      if (e.first++ == 0) {
        e.second = l;
        order.push_back(key);
      }
    }
    for (std::size_t i = 0; i < order.size() && i < 12; ++i) {
      const auto& e = by_msg[order[i]];
      std::printf("      %5zu x %s\n", e.first, e.second.substr(0, 320).c_str());
    }
  }
}

void Stack::print_log_tails() {
  for (auto& c : children_) {
    std::fprintf(stderr, "---- %s (%s) log tail ----\n%s", c->label().c_str(), c->log().c_str(),
                 tail_of_file(c->log(), 15).c_str());
  }
}

int run_with_stack(const std::string& dir, bool keep, const std::function<void(Stack&)>& body) {
  int rc = 0;
  {
    Stack stack(dir);
    try {
      body(stack);
    } catch (const Interrupted&) {
      std::fprintf(stderr, "%s: interrupted; stopping every process\n",
                   program_invocation_short_name);
      rc = 130;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, e.what());
      stack.print_log_tails();
      rc = 1;
    }
  }  // every child is stopped here
  if (keep) {
    std::printf("work dir kept: %s\n", dir.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace sb::bench
