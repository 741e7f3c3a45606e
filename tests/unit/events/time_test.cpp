#include <gtest/gtest.h>

#include "switchboard/events/time.hpp"
#include "switchboard/events/types.hpp"

using namespace sb::events;
using namespace std::chrono;

namespace {
Timestamp utc(int y, unsigned mo, unsigned d, int h, int mi, int s, int ms) {
  return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s} +
         milliseconds{ms};
}
}  // namespace

TEST(Time, FormatsWithMilliseconds) {
  EXPECT_EQ(format_rfc3339_ms(utc(2026, 11, 22, 8, 0, 1, 123)), "2026-11-22T08:00:01.123Z");
  EXPECT_EQ(format_rfc3339_ms(Timestamp{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(utc(1969, 12, 31, 23, 59, 59, 999)), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(format_rfc3339_ms(utc(2024, 2, 29, 0, 0, 0, 5)), "2024-02-29T00:00:00.005Z");
  EXPECT_EQ(format_rfc3339_ms(utc(9999, 12, 31, 23, 59, 59, 999)), "9999-12-31T23:59:59.999Z");
  EXPECT_THROW(format_rfc3339_ms(utc(10000, 1, 1, 0, 0, 0, 0)), InvalidValue);
  // Finer time points are floored.
  const system_clock::time_point fine = utc(2026, 1, 1, 0, 0, 0, 1) + microseconds(999);
  EXPECT_EQ(format_rfc3339_ms(fine), "2026-01-01T00:00:00.001Z");
}

TEST(Time, ParsesWhatItFormats) {
  for (auto t : {utc(2026, 11, 22, 8, 0, 1, 123), Timestamp{}, utc(1900, 3, 1, 12, 0, 0, 7),
                 utc(2000, 2, 29, 23, 59, 59, 999)}) {
    EXPECT_EQ(parse_rfc3339(format_rfc3339_ms(t)), t);
  }
  const auto now = now_ms();
  EXPECT_EQ(parse_rfc3339(format_rfc3339_ms(now)), now);
}

TEST(Time, FractionalDigits) {
  const auto base = utc(2026, 11, 22, 8, 0, 1, 0);
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01Z"), base);
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.1Z"), base + milliseconds(100));
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.12Z"), base + milliseconds(120));
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.123456789Z"), base + milliseconds(123));
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.999999Z"), base + milliseconds(999));
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01.1234567890Z"), InvalidValue);
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01.Z"), InvalidValue);
}

TEST(Time, Offsets) {
  const auto expected = utc(2026, 11, 22, 8, 0, 1, 123);
  EXPECT_EQ(parse_rfc3339("2026-11-22T10:00:01.123+02:00"), expected);
  EXPECT_EQ(parse_rfc3339("2026-11-22T02:30:01.123-05:30"), expected);
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.123+00:00"), expected);
  EXPECT_EQ(parse_rfc3339("2026-11-22T08:00:01.123-00:00"), expected);
  // An offset can move the instant across a day, month and year boundary.
  EXPECT_EQ(parse_rfc3339("2027-01-01T01:30:00+02:00"), utc(2026, 12, 31, 23, 30, 0, 0));
  EXPECT_EQ(parse_rfc3339("2026-12-31T23:30:00-01:00"), utc(2027, 1, 1, 0, 30, 0, 0));
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01+24:00"), InvalidValue);
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01+02:60"), InvalidValue);
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01+0200"), InvalidValue);
  EXPECT_THROW(parse_rfc3339("2026-11-22T08:00:01+02"), InvalidValue);
}

TEST(Time, LenientSeparatorsAndCase) {
  const auto expected = utc(2026, 11, 22, 8, 0, 1, 0);
  EXPECT_EQ(parse_rfc3339("2026-11-22t08:00:01z"), expected);
  EXPECT_EQ(parse_rfc3339("2026-11-22 08:00:01Z"), expected);
}

TEST(Time, RejectsMalformedAndImpossible) {
  for (const char* bad : {"",
                          "2026-11-22",
                          "2026-11-22T08:00Z",
                          "2026-11-22T08:00:01",
                          "2026-11-22T08:00:01.123",
                          "26-11-22T08:00:01Z",
                          "2026-1-22T08:00:01Z",
                          "2026/11/22T08:00:01Z",
                          "2026-11-22T08:00:01Z ",
                          " 2026-11-22T08:00:01Z",
                          "2026-13-01T00:00:00Z",
                          "2026-00-01T00:00:00Z",
                          "2026-02-29T00:00:00Z",
                          "2026-04-31T00:00:00Z",
                          "2026-11-22T24:00:00Z",
                          "2026-11-22T23:60:00Z",
                          "2026-11-22T23:59:61Z",
                          "2026-12-31T23:59:60Z",
                          "2026-11-22T08:00:01ZZ",
                          "２026-11-22T08:00:01Z"}) {
    EXPECT_THROW(parse_rfc3339(bad), InvalidValue) << bad;
    EXPECT_FALSE(try_parse_rfc3339(bad).has_value()) << bad;
  }
  EXPECT_NO_THROW(parse_rfc3339("2024-02-29T00:00:00Z"));
  EXPECT_NO_THROW(parse_rfc3339("2000-02-29T00:00:00Z"));
  EXPECT_THROW(parse_rfc3339("1900-02-29T00:00:00Z"), InvalidValue);
  try {
    parse_rfc3339("2026-02-30T00:00:00Z");
    FAIL();
  } catch (const InvalidValue& e) {
    EXPECT_NE(std::string(e.what()).find("no such date"), std::string::npos) << e.what();
  }
}
