// `*_hash` members never leave over HTTP (11.1).
#include <gtest/gtest.h>

#include "switchboard/edge/redaction.hpp"
#include "switchboard/edge/sse.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/shared/json.hpp"

using namespace sb;
using namespace sb::edge;

TEST(Redaction, HashMembersAtAnyDepthAreRedacted) {
  auto out = redact_hashes(
      R"({"user_id":"u","password_hash":"$argon2id$abc","nested":{"key_hash":"ff","list":[{"refresh_hash":"aa","keep":1}]},"hash":"x","hashes":["y"]})");
  auto d = json::parse(out);
  EXPECT_STREQ(d["password_hash"].GetString(), "[redacted]");
  EXPECT_STREQ(d["nested"]["key_hash"].GetString(), "[redacted]");
  EXPECT_STREQ(d["nested"]["list"][0]["refresh_hash"].GetString(), "[redacted]");
  EXPECT_EQ(d["nested"]["list"][0]["keep"].GetInt(), 1);
  EXPECT_STREQ(d["hash"].GetString(), "x") << "only names ending in _hash";
  EXPECT_STREQ(d["user_id"].GetString(), "u");
  EXPECT_EQ(out.find("argon2id"), std::string::npos);
  EXPECT_EQ(out.find("\"ff\""), std::string::npos);
}

TEST(Redaction, NothingToRedactLeavesTheTextAlone) {
  const std::string text = R"({"b":1,"a":"value_hash"})";  // a value, not a name
  EXPECT_EQ(redact_hashes(text), text);
  // An escaped name is still caught.
  auto out = redact_hashes(R"({"key_\u0068ash":"secret"})");
  EXPECT_EQ(out.find("secret"), std::string::npos);
}

TEST(Redaction, ServedEventsAndSseFramesAreRedacted) {
  events::NewEvent n{.id = events::new_event_id(),
                     .type = events::EventType("identity.apikey.issued"),
                     .data = events::Payload::parse(R"({"key_id":"k","key_hash":"deadbeef"})"),
                     .meta = events::Payload(),
                     .occurred_at = events::now_ms()};
  auto e = events::record(n, events::StreamId("apikey-k"), events::StreamVersion(0),
                          events::Position(3), events::TenantId("acme"), events::now_ms());
  auto r = redacted(e);
  EXPECT_EQ(r.data.text(), R"({"key_id":"k","key_hash":"[redacted]"})");
  EXPECT_EQ(e.data.text(), R"({"key_id":"k","key_hash":"deadbeef"})")
      << "the original is untouched";
  auto frame = sse_frame(e);
  EXPECT_EQ(frame.find("deadbeef"), std::string::npos);
  EXPECT_NE(frame.find("[redacted]"), std::string::npos);
}
