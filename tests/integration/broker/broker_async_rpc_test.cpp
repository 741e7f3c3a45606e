// RpcServer::serve_async: answers from another thread in batches (the event
// store's group commit), in-flight bounded by the prefetch, dropped and
// doubled answers.

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace sb::broker::test {
namespace {

using sb::testing::fresh_vhost;
using sb::testing::wait_until;

struct Pending {
  std::string body;
  RpcResponder responder;
};

// A "group commit" writer: handlers hand requests over; one thread answers
// whatever has accumulated, in batches.
class Batcher {
 public:
  explicit Batcher(bool hold = false) : hold_(hold), thread_([this] { run(); }) {}
  ~Batcher() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  void add(const Delivery& d, RpcResponder r) {
    {
      std::lock_guard lk(mu_);
      queue_.push_back(Pending{d.message.body, std::move(r)});
      max_pending_ = std::max(max_pending_, queue_.size());
    }
    cv_.notify_all();
  }
  void release() {
    {
      std::lock_guard lk(mu_);
      hold_ = false;
    }
    cv_.notify_all();
  }
  std::size_t pending() {
    std::lock_guard lk(mu_);
    return queue_.size();
  }
  std::size_t max_pending() {
    std::lock_guard lk(mu_);
    return max_pending_;
  }
  std::size_t batches() const { return batches_.load(); }
  std::size_t largest_batch() const { return largest_.load(); }

 private:
  void run() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || (!hold_ && !queue_.empty()); });
      if (stop_) return;
      std::deque<Pending> batch;
      batch.swap(queue_);
      lk.unlock();
      // One "transaction" for the whole batch, then every answer.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      for (auto& p : batch) {
        Message reply;
        reply.body = "ok:" + p.body;
        EXPECT_TRUE(p.responder.reply(std::move(reply)));
      }
      batches_.fetch_add(1);
      largest_.store(std::max(largest_.load(), batch.size()));
      lk.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  std::size_t max_pending_ = 0;
  bool hold_;
  bool stop_ = false;
  std::atomic<std::size_t> batches_{0};
  std::atomic<std::size_t> largest_{0};
  std::thread thread_;
};

TEST(BrokerAsyncRpc, FiveHundredConcurrentCallsAnsweredInBatchesFromAnotherThread) {
  const auto url = fresh_vhost("arpc");
  Batcher batcher;
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 64});
  server.serve_async("store.append",
                     [&](const Delivery& d, RpcResponder r) { batcher.add(d, std::move(r)); });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 4096});
  std::vector<std::future<Message>> calls;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 500; ++i) {
    calls.push_back(client.call("store.append", json(std::to_string(i)), 20s));
  }
  int ok = 0;
  for (int i = 0; i < 500; ++i) {
    try {
      if (calls[static_cast<std::size_t>(i)].get().body == "ok:" + std::to_string(i)) ++ok;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "call " << i << ": " << e.what();
    }
  }
  std::printf("500 async calls: %d ok in %.1f ms, %zu batches, largest %zu, max pending %zu\n", ok,
              ms_since(t0), batcher.batches(), batcher.largest_batch(), batcher.max_pending());
  EXPECT_EQ(ok, 500);
  // Answers were batched, and never more than the prefetch waited at once.
  EXPECT_GT(batcher.largest_batch(), 1U);
  EXPECT_LE(batcher.max_pending(), 64U);
}

TEST(BrokerAsyncRpc, InFlightIsBoundedByPrefetch) {
  const auto url = fresh_vhost("arpc");
  Batcher batcher(/*hold=*/true);
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 8});
  server.serve_async("slow",
                     [&](const Delivery& d, RpcResponder r) { batcher.add(d, std::move(r)); });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 4096});
  std::vector<std::future<Message>> calls;
  for (int i = 0; i < 40; ++i) calls.push_back(client.call("slow", json(std::to_string(i)), 20s));
  // Unanswered requests stay unacked: the broker stops at the prefetch.
  ASSERT_TRUE(wait_until([&] { return batcher.pending() == 8; }, 10s));
  EXPECT_FALSE(wait_until([&] { return batcher.pending() > 8; }, 300ms));
  batcher.release();
  int ok = 0;
  for (auto& f : calls) {
    try {
      f.get();
      ++ok;
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }
  EXPECT_EQ(ok, 40);
  EXPECT_EQ(batcher.max_pending(), 8U);
}

TEST(BrokerAsyncRpc, DroppedResponderGivesAPromptRemoteError) {
  const auto url = fresh_vhost("arpc");
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 1, 4});
  server.serve_async("forgetful", [](const Delivery&, RpcResponder) {});
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 16});
  ASSERT_TRUE(wait_until([&] { return client.connected(); }, 10s));
  const auto t0 = std::chrono::steady_clock::now();
  try {
    client.call("forgetful", json("{}"), 30s).get();
    ADD_FAILURE() << "expected a remote error";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::remote) << e.what();
    EXPECT_NE(std::string(e.what()).find("dropped"), std::string::npos) << e.what();
  }
  const double elapsed = ms_since(t0);
  std::printf("dropped responder answered after %.2f ms (deadline 30 s)\n", elapsed);
  // Far from the 30 s deadline: the error came from the server, not a timeout.
  EXPECT_LT(elapsed, 10000.0);
}

TEST(BrokerAsyncRpc, FirstAnswerWinsAndThrowingHandlerFails) {
  const auto url = fresh_vhost("arpc");
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 4});
  std::atomic<int> second_accepted{0};
  server.serve_async("twice", [&](const Delivery&, RpcResponder r) {
    RpcResponder copy = r;
    EXPECT_FALSE(copy.answered());
    Message m;
    m.body = "\"first\"";
    EXPECT_TRUE(copy.reply(std::move(m)));
    EXPECT_TRUE(r.answered());
    if (r.fail("second")) second_accepted.fetch_add(1);
  });
  server.serve_async("throws", [](const Delivery&, RpcResponder) -> void {
    throw std::runtime_error("invalid append");
  });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 16});
  EXPECT_EQ(client.call("twice", json("{}"), 10s).get().body, "\"first\"");
  EXPECT_EQ(second_accepted.load(), 0);
  try {
    client.call("throws", json("{}"), 10s).get();
    ADD_FAILURE() << "expected a remote error";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::remote);
    EXPECT_NE(std::string(e.what()).find("invalid append"), std::string::npos) << e.what();
  }
}

TEST(BrokerAsyncRpc, AnswerAfterTheCallersDeadlineIsSentAndDropped) {
  const auto url = fresh_vhost("arpc");
  std::mutex mu;
  std::vector<RpcResponder> parked;
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 1, 4});
  server.serve_async("late", [&](const Delivery&, RpcResponder r) {
    std::lock_guard lk(mu);
    parked.push_back(std::move(r));
  });
  RpcClient client(RpcClientOptions{connection(url, "test.rpc"), 16});
  auto f = client.call("late", json("{}"), 300ms);
  try {
    f.get();
    ADD_FAILURE() << "expected timeout";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.code(), RpcErrorCode::timeout) << e.what();
  }
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(parked.size(), 1U);
    EXPECT_TRUE(parked[0].reply(json("\"too late\"")));
  }
  // The late answer acked the request: the next call is served normally
  // (prefetch would otherwise be one slot short, never a hang here).
  std::thread answerer([&] {
    const bool arrived = wait_until(
        [&] {
          std::lock_guard lk(mu);
          return parked.size() == 2;
        },
        10s);
    EXPECT_TRUE(arrived);
    std::lock_guard lk(mu);
    if (arrived) parked[1].reply(json("\"on time\""));
  });
  std::string body;
  try {
    body = client.call("late", json("{}"), 10s).get().body;
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
  answerer.join();
  EXPECT_EQ(body, "\"on time\"");
}

}  // namespace
}  // namespace sb::broker::test
