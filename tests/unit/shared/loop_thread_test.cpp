#include <gtest/gtest.h>

#include <atomic>

#include "switchboard/shared/loop_thread.hpp"

using namespace std::chrono_literals;

TEST(LoopThread, StopWakesALongWaitAndJoins) {
  sb::app::LoopThread loop;
  std::atomic<int> rounds{0};
  loop.start([&] {
    while (loop.wait_for(1h)) ++rounds;  // only stop() can end this wait
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(loop.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(rounds.load(), 0);
  EXPECT_FALSE(loop.stop()) << "a second stop is a no-op";
  EXPECT_TRUE(loop.stopping());
}

TEST(LoopThread, NotifyWakesAPredicateOnOwnedState) {
  sb::app::LoopThread loop;
  int items = 0;  // guarded by loop.mutex()
  std::atomic<int> taken{0};
  loop.start([&] {
    while (true) {
      std::unique_lock lock(loop.mutex());
      if (!loop.wait_for(lock, 1h, [&] { return items > 0; })) return;
      taken += items;
      items = 0;
    }
  });
  {
    std::lock_guard lock(loop.mutex());
    items = 3;
  }
  loop.notify();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (taken.load() != 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  EXPECT_EQ(taken.load(), 3);
  loop.stop();
}
