#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "switchboard/shared/metrics.hpp"

using namespace sb::metrics;

TEST(Metrics, CountersGaugesRenderInPrometheusFormat) {
  Registry r;
  auto& c = r.counter("sb_published_total", "Messages published", {{"exchange", "sb.events"}});
  c.inc();
  c.inc(2);
  r.gauge("sb_lag_events", "Lag").set(7.5);
  auto text = r.render();
  EXPECT_NE(text.find("# TYPE sb_published_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("sb_published_total{exchange=\"sb.events\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("sb_lag_events 7.5\n"), std::string::npos);
  EXPECT_EQ(&c, &r.counter("sb_published_total", "", {{"exchange", "sb.events"}}));
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry r;
  auto& h = r.histogram("sb_rpc_seconds", "RPC latency", {}, {0.001, 0.01, 0.1});
  for (double v : {0.0005, 0.005, 0.005, 0.05, 5.0}) h.observe(v);
  auto text = r.render();
  EXPECT_NE(text.find("sb_rpc_seconds_bucket{le=\"0.001\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("sb_rpc_seconds_bucket{le=\"0.01\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("sb_rpc_seconds_bucket{le=\"0.1\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("sb_rpc_seconds_bucket{le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("sb_rpc_seconds_count 5\n"), std::string::npos);
  EXPECT_NEAR(h.sum(), 5.0605, 1e-9);
  EXPECT_GT(h.quantile(0.5), 0.001);
  EXPECT_LE(h.quantile(0.5), 0.01);
}

TEST(Metrics, NamesAndTypesAreChecked) {
  Registry r;
  r.counter("a_total", "");
  EXPECT_THROW(r.gauge("a_total", ""), std::invalid_argument);
  EXPECT_THROW(r.counter("9bad", ""), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name", ""), std::invalid_argument);
}

TEST(Metrics, ConcurrentUpdatesAreNotLost) {
  Registry r;
  auto& c = r.counter("c_total", "");
  auto& g = r.gauge("g", "");
  auto& h = r.histogram("h", "");
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.inc();
        g.add(1.0);
        h.observe(0.001);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(c.value(), 40000u);
  EXPECT_DOUBLE_EQ(g.value(), 40000.0);
  EXPECT_EQ(h.count(), 40000u);
}

TEST(Metrics, LabelValuesAreEscaped) {
  Registry r;
  r.counter("x_total", "", {{"path", "a\"b\\c\nd"}}).inc();
  EXPECT_NE(r.render().find(R"(x_total{path="a\"b\\c\nd"} 1)"), std::string::npos);
}
