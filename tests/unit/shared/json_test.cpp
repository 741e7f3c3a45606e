#include <gtest/gtest.h>

#include "switchboard/shared/json.hpp"

using namespace sb::json;

TEST(Json, ParseAndSerialiseRoundTrip) {
  auto doc = parse(R"({"a":1,"b":[true,null,"x"],"c":{"d":-2.5}})");
  EXPECT_EQ(to_string(doc), R"({"a":1,"b":[true,null,"x"],"c":{"d":-2.5}})");
}

TEST(Json, MalformedInputGivesOffset) {
  try {
    parse(R"({"a": 1,})");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.offset(), 8u);
    EXPECT_NE(std::string(e.what()).find("malformed JSON"), std::string::npos);
  }
  EXPECT_THROW(parse("{} trailing"), Error);
  EXPECT_THROW(parse(""), Error);
}

TEST(Json, RequiredFieldsNameTheKey) {
  auto doc = parse(R"({"s":"x","i":42,"b":false,"n":null})");
  EXPECT_EQ(require_string(doc, "s"), "x");
  EXPECT_EQ(require_int64(doc, "i"), 42);
  EXPECT_FALSE(require_bool(doc, "b"));
  EXPECT_FALSE(optional_string(doc, "n").has_value());
  EXPECT_FALSE(optional_int64(doc, "missing").has_value());
  try {
    require_string(doc, "i");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), "/i");
    EXPECT_NE(std::string(e.what()).find("must be a string, not integer"), std::string::npos);
  }
  EXPECT_THROW(require(doc, "zzz"), Error);
}

TEST(Json, QuotingEscapesControlCharacters) {
  EXPECT_EQ(quoted("a\"b\\c\n\x01"), R"("a\"b\\c\n\u0001")");
  auto back = parse(quoted("tab\there \xc3\xa9"));
  EXPECT_STREQ(back.GetString(), "tab\there \xc3\xa9");
}
