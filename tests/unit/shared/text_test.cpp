// Text helpers shared by the edge and the plugin SDK.
#include <gtest/gtest.h>

#include "switchboard/shared/text.hpp"

using namespace sb::text;

TEST(Text, CaseAndIntegers) {
  EXPECT_EQ(lower("X-Sb-Tenant"), "x-sb-tenant");
  EXPECT_EQ(upper("get"), "GET");
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
  EXPECT_FALSE(iequals("Content-Type", "content-typ"));
  EXPECT_EQ(parse_int(" 42\t"), 42);
  EXPECT_EQ(parse_int("-7"), -7);
  EXPECT_FALSE(parse_int(""));
  EXPECT_FALSE(parse_int("4 2"));
  EXPECT_FALSE(parse_int("99999999999999999999"));
}

TEST(Text, PercentDecodingStrictAndLenient) {
  EXPECT_EQ(percent_decode("a%2Fb%20c+d"), "a/b c+d");
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_FALSE(percent_decode("%2"));
  EXPECT_FALSE(percent_decode("%zz"));
  EXPECT_EQ(percent_decode_lenient("%zz%41+b", true), "%zzA b");
  EXPECT_EQ(query_param("a=1&name=J%C3%B6rg+K&a=2", "name"), "J\xC3\xB6rg K");
  EXPECT_EQ(query_param("a=1&a=2", "a"), "1");
  EXPECT_EQ(query_param("flag&x=1", "flag"), "");
  EXPECT_FALSE(query_param("a=1", "b"));
}

TEST(Text, PathTemplates) {
  Params p;
  EXPECT_TRUE(PathTemplate("/").match("/", p));
  EXPECT_FALSE(PathTemplate("/").match("/x", p));
  PathTemplate t("/items/{id}");
  ASSERT_TRUE(t.match("/items/a%2Fb", p));
  EXPECT_EQ(p, (Params{{"id", "a/b"}}));
  EXPECT_FALSE(t.match("/items/", p));
  EXPECT_FALSE(t.match("/items/%G0", p));
  EXPECT_TRUE(PathTemplate("/items/new").more_specific_than(t));
  EXPECT_FALSE(t.more_specific_than(PathTemplate("/items/new")));
  EXPECT_THROW(PathTemplate("/a/{x}/{x}"), std::invalid_argument);
  EXPECT_THROW(PathTemplate("/a/{x"), std::invalid_argument);
  EXPECT_THROW(PathTemplate("/a/b}"), std::invalid_argument);
  EXPECT_THROW(PathTemplate(""), std::invalid_argument);
}

TEST(Text, TrimAndListsDropSpacesAndEmptyItems) {
  EXPECT_EQ(trim(" \t a b \t"), "a b");
  EXPECT_EQ(trim("   "), "");
  EXPECT_EQ(split_list(" 10.0.0.0/8, 127.0.0.1 ,,\t"),
            (std::vector<std::string_view>{"10.0.0.0/8", "127.0.0.1"}));
  EXPECT_TRUE(split_list("").empty());
  EXPECT_EQ(split_list("a;b", ';'), (std::vector<std::string_view>{"a", "b"}));
}

TEST(Text, HasTokenFindsAListedTokenInAnyCase) {
  EXPECT_TRUE(has_token("keep-alive, Upgrade", "upgrade"));
  EXPECT_TRUE(has_token("\tClose\t", "close"));
  EXPECT_FALSE(has_token("gzip, chunkedx", "chunked"));
  EXPECT_FALSE(has_token("", "close"));
}
