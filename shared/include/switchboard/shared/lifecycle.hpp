#pragma once
// Process lifecycle: a small component model (userver-style). A process is a
// list of components started in order; SIGTERM or SIGINT stops them in
// reverse order — each first stops taking work, then finishes in-flight work
// before a shared drain deadline — and run() returns 0.
//
// Threading: construct the Lifecycle (or call block_termination_signals())
// before any thread starts, so every thread inherits the blocked mask and the
// signal is taken synchronously by run(), never by a random thread.

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb::app {

enum class HealthState { starting, ok, degraded, failed, stopping };
std::string_view to_string(HealthState s);

struct Health {
  HealthState state = HealthState::ok;
  std::string detail;
};

class Component {
 public:
  using Deadline = std::chrono::steady_clock::time_point;
  virtual ~Component() = default;
  virtual std::string_view name() const = 0;
  /// Acquire resources and begin taking work. Throwing aborts start-up.
  virtual void start() {}
  /// Stop taking new work, finish what is in flight before `deadline`,
  /// release resources. Must not throw.
  virtual void stop(Deadline deadline) noexcept { (void)deadline; }
  virtual Health health() const { return {}; }
};

/// Blocks SIGTERM and SIGINT in the calling thread (and threads it starts).
void block_termination_signals();

class Lifecycle {
 public:
  explicit Lifecycle(std::chrono::milliseconds drain_timeout = std::chrono::seconds(10));

  /// Adds a component; they start in the order added.
  template <class T, class... Args>
  T& emplace(Args&&... args) {
    auto c = std::make_shared<T>(std::forward<Args>(args)...);
    T& ref = *c;
    add(std::move(c));
    return ref;
  }
  void add(std::shared_ptr<Component> component);

  /// The first component of type T, or nullptr (components find their
  /// dependencies by type).
  template <class T>
  T* find() const {
    for (const auto& c : components_) {
      if (auto* t = dynamic_cast<T*>(c.get())) return t;
    }
    return nullptr;
  }

  /// Starts every component, waits for SIGTERM/SIGINT or request_stop(),
  /// stops them in reverse order. Returns 0 on a clean stop, 1 when start-up
  /// failed (components already started are stopped first).
  int run();

  /// Asks run() to stop, from any thread.
  void request_stop();

  bool running() const noexcept { return running_.load(); }
  /// Ready: every component has started, none is stopping, and each says ok
  /// or degraded.
  bool ready() const;
  std::vector<std::pair<std::string, Health>> health() const;

 private:
  std::chrono::milliseconds drain_timeout_;
  std::vector<std::shared_ptr<Component>> components_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> started_{false};  // every component's start() returned
};

}  // namespace sb::app
