#include <gtest/gtest.h>

#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

using namespace sb;

TEST(Log, JsonLineCarriesServiceInstanceCorrelationAndFields) {
  log::init(
      {.service = "edge", .instance = "i-1", .level = log::Level::info, .json = true, .file = ""});
  std::string line;
  {
    log::CorrelationScope scope("corr-42");
    line = log::format_json(log::Level::warn, "slow \"call\"",
                            {{"ms", 12}, {"ok", false}, {"who", "x"}, {"ratio", 0.5}});
  }
  auto doc = json::parse(line);
  EXPECT_EQ(json::require_string(doc, "level"), "warn");
  EXPECT_EQ(json::require_string(doc, "service"), "edge");
  EXPECT_EQ(json::require_string(doc, "instance"), "i-1");
  EXPECT_EQ(json::require_string(doc, "correlation_id"), "corr-42");
  EXPECT_EQ(json::require_string(doc, "msg"), "slow \"call\"");
  EXPECT_EQ(json::require_int64(doc, "ms"), 12);
  EXPECT_FALSE(json::require_bool(doc, "ok"));
  EXPECT_EQ(json::require_string(doc, "ts").size(), 24u);  // 2026-11-22T08:00:01.123Z
  EXPECT_TRUE(log::correlation_id().empty());
  auto outside = json::parse(log::format_json(log::Level::info, "m", {}));
  EXPECT_EQ(json::find(outside, "correlation_id"), nullptr);
}

TEST(Log, ScopesNestAndRestore) {
  log::CorrelationScope a("a");
  {
    log::CorrelationScope b("b");
    EXPECT_EQ(log::correlation_id(), "b");
  }
  EXPECT_EQ(log::correlation_id(), "a");
}

TEST(Log, LevelsFilterAndParse) {
  log::init({.service = "t", .instance = "", .level = log::Level::warn, .json = true, .file = ""});
  EXPECT_FALSE(log::enabled(log::Level::info));
  EXPECT_TRUE(log::enabled(log::Level::error));
  EXPECT_FALSE(log::instance_id().empty());
  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_THROW(log::parse_level("loud"), std::invalid_argument);
}
