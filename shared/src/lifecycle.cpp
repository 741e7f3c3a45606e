#include "switchboard/shared/lifecycle.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "switchboard/shared/log.hpp"

namespace sb::app {
namespace {
sigset_t termination_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}
}  // namespace

std::string_view to_string(HealthState s) {
  switch (s) {
    case HealthState::starting:
      return "starting";
    case HealthState::ok:
      return "ok";
    case HealthState::degraded:
      return "degraded";
    case HealthState::failed:
      return "failed";
    case HealthState::stopping:
      return "stopping";
  }
  return "unknown";
}

void block_termination_signals() {
  sigset_t set = termination_set();
  if (int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    throw std::runtime_error(std::string("pthread_sigmask: ") + std::strerror(rc));
  }
}

Lifecycle::Lifecycle(std::chrono::milliseconds drain_timeout) : drain_timeout_(drain_timeout) {
  block_termination_signals();
}

void Lifecycle::add(std::shared_ptr<Component> component) {
  if (running_) throw std::logic_error("components must be added before run()");
  components_.push_back(std::move(component));
}

void Lifecycle::request_stop() {
  // The signal stays pending (blocked everywhere) until run() takes it.
  ::kill(::getpid(), SIGTERM);
}

int Lifecycle::run() {
  block_termination_signals();
  std::size_t started = 0;
  int rc = 0;
  running_ = true;
  try {
    for (; started < components_.size(); ++started) {
      auto& c = components_[started];
      log::info("starting component", {{"component", c->name()}});
      c->start();
    }
  } catch (const std::exception& e) {
    log::critical("start-up failed",
                  {{"component", components_[started]->name()}, {"error", e.what()}});
    rc = 1;
  }
  if (rc == 0) {
    started_ = true;
    log::info("started", {{"components", components_.size()}});
    sigset_t set = termination_set();
    int sig = 0;
    while (sigwait(&set, &sig) != 0) {
    }
    log::info("stopping",
              {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
               {"drain_timeout_ms", static_cast<std::int64_t>(drain_timeout_.count())}});
  }
  stopping_ = true;
  started_ = false;
  auto deadline = std::chrono::steady_clock::now() + drain_timeout_;
  for (std::size_t i = started; i-- > 0;) {
    auto& c = components_[i];
    c->stop(deadline);
    log::info("stopped component", {{"component", c->name()}});
  }
  running_ = false;
  log::info(rc == 0 ? "stopped cleanly" : "stopped after failed start-up");
  return rc;
}

bool Lifecycle::ready() const {
  // Ready only once every component has started (a server started early
  // in the list may already answer probes) and while each says ok or
  // degraded: starting, stopping and failed all mean "do not send work".
  if (!started_ || stopping_) return false;
  for (const auto& c : components_) {
    auto h = c->health();
    if (h.state != HealthState::ok && h.state != HealthState::degraded) return false;
  }
  return true;
}

std::vector<std::pair<std::string, Health>> Lifecycle::health() const {
  std::vector<std::pair<std::string, Health>> out;
  for (const auto& c : components_) out.emplace_back(std::string(c->name()), c->health());
  return out;
}

}  // namespace sb::app
