#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "switchboard/shared/lifecycle.hpp"

using namespace sb::app;

namespace {
struct Journal {
  std::mutex m;
  std::vector<std::string> events;
  void add(std::string e) {
    std::lock_guard l(m);
    events.push_back(std::move(e));
  }
};

class Recorder : public Component {
 public:
  Recorder(std::string name, Journal& j, bool fail = false)
      : name_(std::move(name)), j_(j), fail_(fail) {}
  std::string_view name() const override { return name_; }
  void start() override {
    if (fail_) throw std::runtime_error("boom");
    j_.add("start " + name_);
  }
  void stop(Deadline deadline) noexcept override {
    j_.add(std::chrono::steady_clock::now() < deadline ? "stop " + name_ : "late " + name_);
  }

 private:
  std::string name_;
  Journal& j_;
  bool fail_;
};
// A component whose start() waits for release and whose health is settable.
class Gated : public Component {
 public:
  std::string_view name() const override { return "gated"; }
  void start() override {
    entered.set_value();
    release.get_future().wait();
  }
  Health health() const override { return {state.load(), ""}; }

  std::promise<void> entered;
  std::promise<void> release;
  std::atomic<HealthState> state{HealthState::ok};
};

bool wait_ready(const Lifecycle& lc, bool want) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (lc.ready() != want) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}
}  // namespace

TEST(Lifecycle, NotReadyUntilEveryComponentHasStartedNorWhileOneIsStartingOrStopping) {
  Journal j;
  Lifecycle lc(std::chrono::seconds(5));
  lc.emplace<Recorder>("http", j);  // started first: it could answer probes already
  auto gated = std::make_shared<Gated>();
  auto entered = gated->entered.get_future();
  lc.add(gated);
  int rc = -1;
  std::thread runner([&] { rc = lc.run(); });
  entered.wait();
  EXPECT_FALSE(lc.ready()) << "ready while a component is still starting";
  gated->release.set_value();
  EXPECT_TRUE(wait_ready(lc, true));
  for (auto s : {HealthState::starting, HealthState::stopping, HealthState::failed}) {
    gated->state = s;
    EXPECT_FALSE(lc.ready()) << to_string(s);
  }
  gated->state = HealthState::degraded;
  EXPECT_TRUE(lc.ready());
  lc.request_stop();
  runner.join();
  EXPECT_EQ(rc, 0);
  EXPECT_FALSE(lc.ready());
}

TEST(Lifecycle, StartsInOrderStopsInReverseOnRequest) {
  Journal j;
  Lifecycle lc(std::chrono::seconds(5));
  lc.emplace<Recorder>("db", j);
  lc.emplace<Recorder>("http", j);
  EXPECT_NE(lc.find<Recorder>(), nullptr);
  std::thread stopper([&] {
    while (!lc.ready()) std::this_thread::yield();
    lc.request_stop();
  });
  EXPECT_EQ(lc.run(), 0);
  stopper.join();
  EXPECT_EQ(j.events, (std::vector<std::string>{"start db", "start http", "stop http", "stop db"}));
  EXPECT_FALSE(lc.ready());
}

TEST(Lifecycle, FailedStartStopsWhatStartedAndReturnsOne) {
  Journal j;
  Lifecycle lc;
  lc.emplace<Recorder>("db", j);
  lc.emplace<Recorder>("broken", j, true);
  lc.emplace<Recorder>("never", j);
  EXPECT_EQ(lc.run(), 1);
  EXPECT_EQ(j.events, (std::vector<std::string>{"start db", "stop db"}));
}

TEST(Lifecycle, HealthStateNames) {
  EXPECT_EQ(to_string(HealthState::degraded), "degraded");
  Journal j;
  Lifecycle lc;
  lc.emplace<Recorder>("x", j);
  auto h = lc.health();
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].first, "x");
}
