// RpcServer::serve_async: answers from another thread in batches (the event
// store's group commit), in-flight bounded by the prefetch, dropped and
// doubled answers.

#include "test_util.hpp"

#include <gtest/gtest.h>
#include <uv.h>

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
// RpcClientOptions::uv_loop: the client runs on the caller's loop (the edge's
// event loops) — created, called, answered and destroyed on that thread, and
// the loop closes cleanly afterwards (every handle it made is freed).
TEST(BrokerAsyncRpc, ClientOnTheCallersLoopAnswersOnThatThread) {
  const auto url = fresh_vhost("arpc");
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 64});
  server.serve("echo", [](const Delivery& d) { return json("ok:" + d.message.body); });

  struct State {
    uv_loop_t loop{};
    uv_timer_t stopper{};
    std::unique_ptr<RpcClient> client;
    std::thread::id loop_thread;
    int ok = 0, wrong_thread = 0, no_route = 0, closed = 0, other = 0;
    int answered = 0;
  } st;
  constexpr int kCalls = 300;
  int close_rc = -1;
  std::thread t([&] {
    ASSERT_EQ(uv_loop_init(&st.loop), 0);
    st.loop_thread = std::this_thread::get_id();
    RpcClientOptions o{connection(url, "test.loop.rpc"), 4096};
    o.uv_loop = &st.loop;
    st.client = std::make_unique<RpcClient>(std::move(o));
    uv_timer_init(&st.loop, &st.stopper);
    st.stopper.data = &st;
    auto on_result = [&st](int i, RpcClient::Result r) {
      if (std::this_thread::get_id() != st.loop_thread) ++st.wrong_thread;
      if (r.reply && r.reply->body == "ok:" + std::to_string(i)) {
        ++st.ok;
      } else if (r.error && r.error->code() == RpcErrorCode::no_route) {
        ++st.no_route;
      } else if (r.error && r.error->code() == RpcErrorCode::closed) {
        ++st.closed;
      } else {
        ++st.other;
      }
      if (++st.answered == kCalls + 1) {
        // Not from inside the client's own callback: on the next turn.
        uv_timer_start(
            &st.stopper,
            [](uv_timer_t* h) {
              auto* s = static_cast<State*>(h->data);
              s->client.reset();  // on the loop's thread
              uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
            },
            0, 0);
      }
    };
    for (int i = 0; i < kCalls; ++i) {
      st.client->call("echo", json(std::to_string(i)), 20s,
                      [on_result, i](RpcClient::Result r) { on_result(i, std::move(r)); });
    }
    st.client->call("nobody.home", json("x"), 20s,
                    [on_result](RpcClient::Result r) { on_result(-1, std::move(r)); });
    uv_run(&st.loop, UV_RUN_DEFAULT);  // returns once every handle is closed
    close_rc = uv_loop_close(&st.loop);
  });
  t.join();
  EXPECT_EQ(st.ok, kCalls);
  EXPECT_EQ(st.no_route, 1);
  EXPECT_EQ(st.wrong_thread, 0);
  EXPECT_EQ(st.other + st.closed, 0);
  EXPECT_EQ(close_rc, 0) << "a handle of the client was left open on the caller's loop";
}

// Destroyed with calls in flight: each is answered `closed`, on the loop.
TEST(BrokerAsyncRpc, ClientOnTheCallersLoopAnswersCallsInFlightWhenDestroyed) {
  const auto url = fresh_vhost("arpc");
  Batcher batcher(/*hold=*/true);
  RpcServer server(RpcServerOptions{connection(url, "test.srv"), 2, 64});
  server.serve_async("held",
                     [&](const Delivery& d, RpcResponder r) { batcher.add(d, std::move(r)); });
  uv_loop_t loop{};
  uv_timer_t poller{};
  std::unique_ptr<RpcClient> client;
  int closed = 0, other = 0;
  int close_rc = -1;
  std::thread t([&] {
    ASSERT_EQ(uv_loop_init(&loop), 0);
    RpcClientOptions o{connection(url, "test.loop.rpc"), 4096};
    o.uv_loop = &loop;
    client = std::make_unique<RpcClient>(std::move(o));
    for (int i = 0; i < 20; ++i) {
      client->call("held", json(std::to_string(i)), 30s, [&](RpcClient::Result r) {
        (r.error && r.error->code() == RpcErrorCode::closed ? closed : other)++;
      });
    }
    // Once the server holds all 20, destroy the client on the loop.
    uv_timer_init(&loop, &poller);
    poller.data = &client;
    struct Ctx {
      std::unique_ptr<RpcClient>* client;
      Batcher* batcher;
    };
    static Ctx ctx;
    ctx = Ctx{&client, &batcher};
    poller.data = &ctx;
    uv_timer_start(
        &poller,
        [](uv_timer_t* h) {
          auto* c = static_cast<Ctx*>(h->data);
          if (c->batcher->pending() < 20) return;
          c->client->reset();
          uv_timer_stop(h);
          uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
        },
        10, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    close_rc = uv_loop_close(&loop);
  });
  t.join();
  batcher.release();
  EXPECT_EQ(closed, 20);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(close_rc, 0);
}

}  // namespace sb::broker::test
