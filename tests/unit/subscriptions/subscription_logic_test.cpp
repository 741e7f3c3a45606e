// The pure parts of the subscription library: type patterns and their SQL
// form, partition hashing, checkpoint advancement, retry schedule, names.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>
#include <vector>

#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription_logic.hpp"

using namespace sb::events;
using namespace std::chrono_literals;

namespace {

bool regex_matches(const std::string& pattern, const std::string& type) {
  return std::regex_match(type, std::regex(type_pattern_regex(pattern), std::regex::extended));
}

}  // namespace

TEST(TypePattern, AmqpTopicSemantics) {
  struct Case {
    const char* pattern;
    const char* type;
    bool match;
  };
  const std::vector<Case> cases = {
      {"identity.user.registered", "identity.user.registered", true},
      {"identity.user.registered", "identity.user.deleted", false},
      {"identity.user.*", "identity.user.registered", true},
      {"identity.user.*", "identity.user", false},
      {"identity.user.*", "identity.user.a.b", false},
      {"identity.*.registered", "identity.tenant.registered", true},
      {"*.*.*", "a.b.c", true},
      {"*.*.*", "a.b", false},
      {"service.#", "service", true},
      {"service.#", "service.heartbeat", true},
      {"service.#", "service.instance.registered", true},
      {"service.#", "services.instance.registered", false},
      {"#", "anything.at.all", true},
      {"#.registered", "registered", true},
      {"#.registered", "identity.user.registered", true},
      {"#.registered", "identity.user.registered2", false},
      {"a.#.c", "a.c", true},
      {"a.#.c", "a.b.c", true},
      {"a.#.c", "a.b.b.c", true},
      {"a.#.c", "a.b.b.d", false},
      {"#.b.#", "b", true},
      {"#.b.#", "a.b.c", true},
      {"#.b.#", "a.bb.c", false},
      {"#.*", "a", true},
      {"#.*", "a.b.c", true},
      {"*.#", "a", true},
      {"a.#.#.b", "a.b", true},
      {"a-b_c.*", "a-b_c.x", true},
      {"a-b_c.*", "a-bxc.x", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(type_matches(c.pattern, c.type), c.match) << c.pattern << " vs " << c.type;
    EXPECT_EQ(regex_matches(c.pattern, c.type), c.match)
        << c.pattern << " vs " << c.type << " regex " << type_pattern_regex(c.pattern);
  }
}

TEST(TypePattern, RegexAgreesWithDirectMatcherExhaustively) {
  // Every pattern over {a, b, *, #} up to 4 segments against every type over
  // {a, b, c} up to 4 segments.
  const std::vector<std::string> atoms = {"a", "b", "*", "#"};
  const std::vector<std::string> type_atoms = {"a", "b", "c"};
  std::vector<std::string> patterns;
  std::vector<std::string> types;
  std::function<void(std::string, int, const std::vector<std::string>&, std::vector<std::string>&)>
      gen = [&](std::string prefix, int left, const std::vector<std::string>& from,
                std::vector<std::string>& out) {
        if (!prefix.empty()) out.push_back(prefix);
        if (left == 0) return;
        for (const auto& a : from) gen(prefix.empty() ? a : prefix + "." + a, left - 1, from, out);
      };
  gen("", 4, atoms, patterns);
  gen("", 4, type_atoms, types);
  int checked = 0;
  for (const auto& p : patterns) {
    const std::regex re(type_pattern_regex(p), std::regex::extended);
    for (const auto& t : types) {
      ASSERT_EQ(std::regex_match(t, re), type_matches(p, t)) << p << " vs " << t;
      ++checked;
    }
  }
  EXPECT_GT(checked, 10000);
}

TEST(TypePattern, RejectsAnythingButSegmentsAndWildcards) {
  for (const char* bad : {"", ".", "a.", ".a", "a..b", "a.b*", "a.%", "a.b_", "A.b", "a.(b)",
                          "a.b|c", "a.b$", "a.^b", "a\\.b", "a.b c", "a.[b]", "a.b'; drop"}) {
    if (std::string(bad) == "a.b_") continue;  // '_' is a valid segment character
    EXPECT_FALSE(is_valid_type_pattern(bad)) << bad;
    EXPECT_THROW(type_pattern_regex(bad), InvalidValue) << bad;
  }
  EXPECT_TRUE(is_valid_type_pattern("a.b_"));
  EXPECT_FALSE(is_wildcard_pattern("a.b.c"));
  EXPECT_TRUE(is_wildcard_pattern("a.*.c"));
  EXPECT_TRUE(is_wildcard_pattern("#"));
}

TEST(FilterSql, ParameterisedClauses) {
  Filter f;
  f.types = {"identity.user.registered", "service.#", "x.*.y"};
  f.tenant = TenantId("acme");
  f.recorded_from = parse_rfc3339("2026-01-01T00:00:00Z");
  f.recorded_to = parse_rfc3339("2026-01-02T00:00:00Z");
  f.correlation_id = CorrelationId("corr-1");
  f.partition = Partition{2, 4};
  sb::pg::Params params{std::int64_t{0}, std::int64_t{10}};
  const auto sql = filter_sql(f, params);
  EXPECT_EQ(sql,
            " AND (type = ANY($3::text[]) OR type ~ $4) AND tenant = $5 AND recorded_at >= "
            "$6::timestamptz AND recorded_at < $7::timestamptz AND correlation_id = $8 AND " +
                partition_sql(9) + " = $10");
  ASSERT_EQ(params.size(), 10u);
  EXPECT_EQ(*params[2].text(), "{\"identity.user.registered\"}");
  EXPECT_EQ(*params[3].text(),
            "(" + type_pattern_regex("service.#") + ")|(" + type_pattern_regex("x.*.y") + ")");
  EXPECT_EQ(*params[4].text(), "acme");
  EXPECT_EQ(*params[8].text(), "4");
  EXPECT_EQ(*params[9].text(), "2");
  // No value ever reaches the SQL text.
  EXPECT_EQ(sql.find("acme"), std::string::npos);
  EXPECT_EQ(sql.find("corr-1"), std::string::npos);

  sb::pg::Params none;
  EXPECT_EQ(filter_sql(Filter{}, none), "");
  EXPECT_TRUE(none.empty());

  Filter bad;
  bad.types = {"a.b'--"};
  sb::pg::Params p2;
  EXPECT_THROW(filter_sql(bad, p2), InvalidValue);
  Filter bad_part;
  bad_part.partition = Partition{4, 4};
  EXPECT_THROW(filter_sql(bad_part, p2), InvalidValue);
}

TEST(FilterSql, TextArrayEscapes) {
  EXPECT_EQ(pg_text_array({}), "{}");
  EXPECT_EQ(pg_text_array({"a", "b\"c", "d\\e"}), R"({"a","b\"c","d\\e"})");
}

TEST(Partitions, Md5PrefixModuloCount) {
  // md5("") = d41d8cd98f00b204..., md5("a") = 0cc175b9c0f1b6a8...
  EXPECT_EQ(partition_of("", 1000), static_cast<int>(0xd41d8cd9u % 1000u));
  EXPECT_EQ(partition_of("a", 7), static_cast<int>(0x0cc175b9u % 7u));
  EXPECT_EQ(partition_of("anything", 1), 0);
  EXPECT_EQ(partition_of("anything", 0), 0);
}

TEST(Partitions, SpreadsStreamsEvenlyAndStably) {
  constexpr int kCount = 8;
  std::vector<int> counts(kCount, 0);
  for (int i = 0; i < 8000; ++i) {
    const auto s = "order-" + std::to_string(i);
    const int p = partition_of(s, kCount);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, kCount);
    ASSERT_EQ(p, partition_of(s, kCount));
    ++counts[static_cast<std::size_t>(p)];
  }
  for (int c : counts) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

TEST(Checkpoint, ScanBounds) {
  EXPECT_EQ(scan_upper_bound(Position(0), Position(50), 100), 50);
  EXPECT_EQ(scan_upper_bound(Position(0), Position(500), 100), 100);
  EXPECT_EQ(scan_upper_bound(Position(450), Position(500), 100), 500);
  EXPECT_EQ(scan_upper_bound(Position(0), Position(500), 0), 500);
  EXPECT_EQ(scan_upper_bound(Position(600), Position(500), 100), 500);
}

TEST(Checkpoint, PageScannedTo) {
  // Short page: everything up to the bound was seen, matching or not.
  EXPECT_EQ(page_scanned_to(Position(10), 100, 3, 50, Position(40)), Position(100));
  EXPECT_EQ(page_scanned_to(Position(10), 100, 0, 50, std::nullopt), Position(100));
  // Full page: later rows may match too; resume after the last row.
  EXPECT_EQ(page_scanned_to(Position(10), 100, 50, 50, Position(70)), Position(70));
  // Nothing to scan (bound at or below the start).
  EXPECT_EQ(page_scanned_to(Position(10), 10, 0, 50, std::nullopt), Position(10));
  EXPECT_EQ(page_scanned_to(Position(10), 5, 0, 50, std::nullopt), Position(10));
}

TEST(Checkpoint, FilteredOutPositionsAdvanceTheCheckpoint) {
  // No matching events, but the head moved: write the checkpoint only.
  auto s = plan_page_step(Position(10), 0, Position(25), Position(25));
  EXPECT_TRUE(s.write);
  EXPECT_EQ(s.new_checkpoint, Position(25));
  EXPECT_TRUE(s.caught_up);
  // Nothing new at all: no transaction.
  s = plan_page_step(Position(25), 0, Position(25), Position(25));
  EXPECT_FALSE(s.write);
  EXPECT_TRUE(s.caught_up);
  // A full page behind the head: write and read on at once.
  s = plan_page_step(Position(0), 500, Position(700), Position(10000));
  EXPECT_TRUE(s.write);
  EXPECT_EQ(s.new_checkpoint, Position(700));
  EXPECT_FALSE(s.caught_up);
  // A window-bounded empty page: advance to the window, not caught up.
  s = plan_page_step(Position(0), 0, Position(100000), Position(250000));
  EXPECT_TRUE(s.write);
  EXPECT_FALSE(s.caught_up);
  // A checkpoint reset beyond the head never moves back.
  s = plan_page_step(Position(900), 0, Position(900), Position(800));
  EXPECT_FALSE(s.write);
  EXPECT_EQ(s.new_checkpoint, Position(900));
  EXPECT_TRUE(s.caught_up);
}

TEST(Backoff, ExponentialCapped) {
  RetryBackoff b;
  b.initial = 100ms;
  b.max = 1000ms;
  b.factor = 2.0;
  EXPECT_EQ(b.delay_before(1), 0ms);
  EXPECT_EQ(b.delay_before(2), 100ms);
  EXPECT_EQ(b.delay_before(3), 200ms);
  EXPECT_EQ(b.delay_before(4), 400ms);
  EXPECT_EQ(b.delay_before(5), 800ms);
  EXPECT_EQ(b.delay_before(6), 1000ms);
  EXPECT_EQ(b.delay_before(1000), 1000ms);
}

TEST(Names, LockKeysDifferPerPartitionAndName) {
  std::set<std::int64_t> keys;
  for (const char* n : {"a", "b", "projections.registry"}) {
    for (int p = 0; p < 16; ++p) keys.insert(advisory_lock_key(n, p));
  }
  EXPECT_EQ(keys.size(), 48u);
  EXPECT_EQ(advisory_lock_key("a", 1), advisory_lock_key("a", 1));
  EXPECT_TRUE(is_valid_subscription_name("registry.services-v2_1"));
  EXPECT_FALSE(is_valid_subscription_name(""));
  EXPECT_FALSE(is_valid_subscription_name(".a"));
  EXPECT_FALSE(is_valid_subscription_name("a b"));
  EXPECT_FALSE(is_valid_subscription_name("a*"));
  EXPECT_FALSE(is_valid_subscription_name("A"));
  EXPECT_THROW(validate_subscription_name("a#"), InvalidValue);
}

TEST(Rate, SlidingWindow) {
  RateMeter m(std::chrono::seconds(10));
  const auto t0 = RateMeter::Clock::now();
  m.add(50, t0);
  m.add(50, t0 + 1s);
  EXPECT_DOUBLE_EQ(m.rate(t0 + 2s), 10.0);
  EXPECT_DOUBLE_EQ(m.rate(t0 + 10500ms), 5.0);
  EXPECT_DOUBLE_EQ(m.rate(t0 + 30s), 0.0);
}
