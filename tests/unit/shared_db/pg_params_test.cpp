#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "switchboard/shared/pg.hpp"

namespace sb::pg {
namespace {

std::optional<std::string> text_of(const Param& p) {
  return p.text();
}

TEST(PgParam, IntegersAreDecimalText) {
  EXPECT_EQ(text_of(42), "42");
  EXPECT_EQ(text_of(-7), "-7");
  EXPECT_EQ(text_of(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(text_of(std::numeric_limits<std::uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(text_of(static_cast<std::int16_t>(-3)), "-3");
}

TEST(PgParam, BoolsArePostgresLiterals) {
  EXPECT_EQ(text_of(true), "true");
  EXPECT_EQ(text_of(false), "false");
}

TEST(PgParam, FloatingPointRoundTripsWithShortestText) {
  EXPECT_EQ(text_of(0.1), "0.1");
  EXPECT_EQ(text_of(0.1f), "0.1");  // not 0.10000000149011612: float is formatted as float
  EXPECT_EQ(text_of(1e300), "1e+300");
  EXPECT_EQ(text_of(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(text_of(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(text_of(-std::numeric_limits<double>::infinity()), "-Infinity");
}

TEST(PgParam, StringsKeepTheirBytes) {
  EXPECT_EQ(text_of("it's; DROP TABLE x"), "it's; DROP TABLE x");
  EXPECT_EQ(text_of(std::string("abc")), "abc");
  EXPECT_EQ(text_of(std::string_view("xyz")), "xyz");
  EXPECT_EQ(text_of(""), "");
  EXPECT_FALSE(Param("").is_null());  // empty string is not NULL
}

TEST(PgParam, NullsFromNulloptNullPointerAndEmptyOptional) {
  EXPECT_TRUE(Param(std::nullopt).is_null());
  const char* none = nullptr;
  EXPECT_TRUE(Param(none).is_null());
  EXPECT_TRUE(Param(std::optional<int>()).is_null());
  EXPECT_EQ(text_of(std::optional<int>(5)), "5");
  EXPECT_EQ(text_of(std::optional<std::string>("s")), "s");
}

TEST(PgParam, BytesUseHexFormat) {
  EXPECT_EQ(Param::bytes(std::string("\x00\xff\x10", 3)).text(), "\\x00ff10");
  EXPECT_EQ(Param::bytes("").text(), "\\x");
}

TEST(PgParams, BraceListAndAddKeepOrder) {
  Params p{1, "two", std::nullopt, 4.5, true};
  ASSERT_EQ(p.size(), 5u);
  EXPECT_EQ(p[0].text(), "1");
  EXPECT_EQ(p[1].text(), "two");
  EXPECT_TRUE(p[2].is_null());
  EXPECT_EQ(p[3].text(), "4.5");
  EXPECT_EQ(p[4].text(), "true");
  p.add(std::int64_t{9});
  EXPECT_EQ(p[5].text(), "9");
  EXPECT_TRUE(Params{}.empty());
}

TEST(PgResult, DefaultResultIsEmpty) {
  Result r;
  EXPECT_EQ(r.size(), 0u);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.columns(), 0u);
  EXPECT_EQ(r.affected_rows(), 0u);
  EXPECT_EQ(r.begin(), r.end());
  EXPECT_THROW(r.one(), UsageError);
  EXPECT_THROW(r[0], UsageError);
  EXPECT_FALSE(r.optional_one().has_value());
}

TEST(PgConninfo, UrlGetsConnectTimeoutRoundedUpToSeconds) {
  ConnectOptions o;
  o.url = "postgresql://sb:pw@127.0.0.1:5432/db";
  o.connect_timeout = std::chrono::milliseconds(1500);
  EXPECT_EQ(build_conninfo(o), "postgresql://sb:pw@127.0.0.1:5432/db?connect_timeout=2");
  o.url = "postgres://h/db?sslmode=disable";
  o.connect_timeout = std::chrono::milliseconds(3000);
  EXPECT_EQ(build_conninfo(o), "postgres://h/db?sslmode=disable&connect_timeout=3");
}

TEST(PgConninfo, KeyValueStringGetsConnectTimeoutAppended) {
  ConnectOptions o;
  o.url = "host=127.0.0.1 dbname=x";
  o.connect_timeout = std::chrono::milliseconds(1);
  EXPECT_EQ(build_conninfo(o), "host=127.0.0.1 dbname=x connect_timeout=1");
}

TEST(PgConninfo, RedactHidesPasswords) {
  EXPECT_EQ(redact_url("postgresql://sb:secret@127.0.0.1:5/db"),
            "postgresql://sb:***@127.0.0.1:5/db");
  EXPECT_EQ(redact_url("postgresql://sb@127.0.0.1:5/db"), "postgresql://sb@127.0.0.1:5/db");
  EXPECT_EQ(redact_url("postgresql://127.0.0.1/db"), "postgresql://127.0.0.1/db");
  EXPECT_EQ(redact_url("host=h password=secret dbname=d"), "host=h password=*** dbname=d");
}

}  // namespace
}  // namespace sb::pg
