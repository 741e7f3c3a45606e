// The broker frozen with SIGSTOP for 15 s: publishes and RPCs fail by their
// deadlines instead of hanging, and everything resumes after SIGCONT.

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>

namespace sb::broker::test {
namespace {

using sb::testing::fresh_vhost;
using sb::testing::servers;
using sb::testing::wait_until;
using Clock = std::chrono::steady_clock;

struct Thaw {
  bool frozen = false;
  ~Thaw() {
    if (frozen) servers().thaw("rabbitmq");
  }
};

TEST(BrokerFreeze, DeadlinesHoldWhileFrozenAndEverythingResumes) {
  const auto url = fresh_vhost("freeze");
  PublisherOptions po;
  po.connection = connection(url, "freeze.pub");
  Publisher pub(po);
  QueueSpec q;
  q.name = "events";
  Topology t = platform_topology();
  t.queues = {q};
  pub.declare(t);
  std::atomic<int> consumed{0};
  ConsumerOptions co;
  co.connection = connection(url, "freeze.con");
  Consumer con(co);
  con.consume(q, ConsumeOptions{}, [&](const Delivery&) { consumed.fetch_add(1); });
  RpcServer server(RpcServerOptions{connection(url, "freeze.srv"), 2, 16});
  server.serve("echo", [](const Delivery& d) {
    Message r;
    r.body = d.message.body;
    return r;
  });
  RpcClient client(RpcClientOptions{connection(url, "freeze.rpc"), 1024});

  ASSERT_TRUE(pub.publish(json("{}"), {"", "events", true, {}}).get().ok());
  ASSERT_EQ(client.call("echo", json("1"), 5s).get().body, "1");
  ASSERT_TRUE(wait_until([&] { return consumed.load() == 1; }, 5s));

  Thaw thaw;
  servers().freeze("rabbitmq");
  thaw.frozen = true;
  const auto frozen_at = Clock::now();

  // Before the heartbeat notices: calls in flight on a live-looking socket.
  {
    const auto t0 = Clock::now();
    auto p = pub.publish(json("{}"), {"", "events", true, t0 + 2s});
    auto r = client.call("echo", json("2"), 1s);
    try {
      r.get();
      ADD_FAILURE() << "rpc succeeded against a frozen broker";
    } catch (const RpcError& e) {
      std::printf("rpc failed after %.0f ms (deadline 1000): %s\n", ms_since(t0), e.what());
      EXPECT_TRUE(e.code() == RpcErrorCode::timeout || e.code() == RpcErrorCode::connection_lost);
      EXPECT_LE(ms_since(t0), 1100.0);
    }
    auto o = p.get();
    std::printf("publish failed after %.0f ms (deadline 2000): %s\n", ms_since(t0),
                o.reason.c_str());
    EXPECT_EQ(o.status, PublishStatus::failed);
    EXPECT_LE(ms_since(t0), 2150.0);
  }
  // After the heartbeat declared the connection dead: reconnect attempts hang
  // in the frozen broker's accept backlog, yet deadlines still hold.
  ASSERT_TRUE(wait_until([&] { return !pub.connected() && !client.connected(); }, 8s));
  std::printf("loss detected %.0f ms after the freeze\n", ms_since(frozen_at));
  {
    const auto t0 = Clock::now();
    auto p = pub.publish(json("{}"), {"", "events", true, t0 + 1500ms});
    auto r = client.call("echo", json("3"), 800ms);
    EXPECT_THROW(r.get(), RpcError);
    EXPECT_LE(ms_since(t0), 900.0);
    EXPECT_EQ(p.get().status, PublishStatus::failed);
    EXPECT_LE(ms_since(t0), 1650.0);
  }
  // A publish without a deadline waits out the freeze and is confirmed.
  auto patient = pub.publish(json("{\"patient\":true}"), {"", "events", true, {}});

  const auto remaining = 15s - (Clock::now() - frozen_at);
  if (remaining > Clock::duration::zero()) std::this_thread::sleep_for(remaining);
  servers().thaw("rabbitmq");
  thaw.frozen = false;
  const auto thawed = Clock::now();

  EXPECT_EQ(patient.get().status, PublishStatus::confirmed);
  std::printf("patient publish confirmed %.0f ms after thaw\n", ms_since(thawed));
  bool rpc_ok = wait_until(
      [&] {
        try {
          return client.call("echo", json("4"), 1s).get().body == "4";
        } catch (const RpcError&) {
          return false;
        }
      },
      30s, 100ms);
  EXPECT_TRUE(rpc_ok);
  std::printf("rpc works again %.0f ms after thaw\n", ms_since(thawed));
  const int before = consumed.load();
  EXPECT_TRUE(pub.publish(json("{}"), {"", "events", true, Clock::now() + 20s}).get().ok());
  EXPECT_TRUE(wait_until([&] { return consumed.load() > before; }, 20s));
  std::printf("everything resumed %.0f ms after thaw\n", ms_since(thawed));
}

}  // namespace
}  // namespace sb::broker::test
