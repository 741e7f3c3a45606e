// 100,000 messages published with confirms while the broker restarts: every
// one ends confirmed with exactly one outcome, consumption resumes within
// 10 s of the broker being back, and the consumer sees every message.

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

namespace sb::broker::test {
namespace {

using sb::testing::fresh_vhost;
using sb::testing::servers;
using sb::testing::wait_until;
using Clock = std::chrono::steady_clock;

constexpr int kMessages = 100000;

TEST(BrokerRestart, HundredThousandConfirmedAcrossRestart) {
  const auto url = fresh_vhost("restart");
  PublisherOptions po;
  po.connection = connection(url, "restart.pub");
  po.max_in_flight = 2000;
  po.close_timeout = 30s;
  Publisher pub(po);
  QueueSpec q;
  q.name = "load";
  Topology t;
  t.queues = {q};
  pub.declare(t);

  auto seen = std::make_unique<std::atomic<std::uint32_t>[]>(kMessages);
  auto outcomes = std::make_unique<std::atomic<std::uint32_t>[]>(kMessages);
  std::atomic<int> consumed{0}, confirmed{0}, failed{0};
  std::atomic<std::int64_t> last_delivery_ns{0};

  ConsumerOptions co;
  co.connection = connection(url, "restart.con");
  co.workers = 2;
  Consumer con(co);
  ConsumeOptions opts;
  opts.prefetch = 500;
  con.consume(q, opts, [&](const Delivery& d) {
    const auto seq = d.message.header_int("seq");
    if (seq && *seq >= 0 && *seq < kMessages) seen[static_cast<std::size_t>(*seq)].fetch_add(1);
    consumed.fetch_add(1);
    last_delivery_ns.store(Clock::now().time_since_epoch().count());
  });

  const std::string body = [] {
    std::string b = "{\"payload\":\"";
    b.append(1000, 'x');
    return b + "\"}";
  }();
  const auto t0 = Clock::now();
  std::thread producer([&] {
    for (int i = 0; i < kMessages; ++i) {
      Message m;
      m.body = body;
      m.message_id = std::to_string(i);
      m.headers["seq"] = std::int64_t{i};
      pub.publish(std::move(m), {"", "load", false, {}}, [&, i](const PublishOutcome& o) {
        outcomes[static_cast<std::size_t>(i)].fetch_add(1);
        (o.ok() ? confirmed : failed).fetch_add(1);
        if (!o.ok()) std::fprintf(stderr, "message %d failed: %s\n", i, o.reason.c_str());
      });
    }
  });

  ASSERT_TRUE(wait_until([&] { return confirmed.load() >= 30000; }, 60s));
  std::printf("restarting the broker at %d confirmed, %d consumed\n", confirmed.load(),
              consumed.load());
  servers().restart("rabbitmq");
  const auto back = Clock::now();
  const int consumed_at_back = consumed.load();
  std::printf("broker back after %.1f s of the run\n",
              std::chrono::duration<double>(back - t0).count());

  // Consumption resumes: a delivery after the broker came back.
  const bool resumed =
      wait_until([&] { return last_delivery_ns.load() > back.time_since_epoch().count(); }, 30s);
  const double resume_ms = std::chrono::duration<double, std::milli>(
                               Clock::time_point(Clock::duration(last_delivery_ns.load())) - back)
                               .count();
  std::printf("consumption resumed %.0f ms after the broker was back (consumed then: %d)\n",
              resume_ms, consumed_at_back);
  EXPECT_TRUE(resumed);
  EXPECT_LE(resume_ms, 10000.0);

  producer.join();
  ASSERT_TRUE(pub.flush(120s)) << "outcomes missing; in flight: " << pub.in_flight();
  EXPECT_EQ(confirmed.load(), kMessages);
  EXPECT_EQ(failed.load(), 0);
  int not_once = 0;
  for (int i = 0; i < kMessages; ++i) {
    if (outcomes[static_cast<std::size_t>(i)].load() != 1) ++not_once;
  }
  EXPECT_EQ(not_once, 0) << "messages without exactly one outcome";

  wait_until(
      [&] {
        for (int i = 0; i < kMessages; ++i) {
          if (seen[static_cast<std::size_t>(i)].load() == 0) return false;
        }
        return true;
      },
      60s, 100ms);
  int missing = 0;
  long duplicates = 0;
  for (int i = 0; i < kMessages; ++i) {
    const auto n = seen[static_cast<std::size_t>(i)].load();
    if (n == 0) ++missing;
    if (n > 1) duplicates += n - 1;
  }
  std::printf(
      "published %d, confirmed %d, consumed %d: missing = %d, duplicates seen = %ld, "
      "total %.1f s\n",
      kMessages, confirmed.load(), consumed.load(), missing, duplicates,
      std::chrono::duration<double>(Clock::now() - t0).count());
  EXPECT_EQ(missing, 0);
}

}  // namespace
}  // namespace sb::broker::test
