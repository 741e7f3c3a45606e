#pragma once
// Synthetic identity.* events (docs/protocol.md 11.1) for the edge's unit
// tests: each at the next position of one feed.

#include <cstdint>
#include <string>

#include "switchboard/edge/identity_view.hpp"
#include "switchboard/events/envelope.hpp"
#include "switchboard/events/uuid.hpp"

namespace sb::edgetest {

class IdentityEvents {
 public:
  explicit IdentityEvents(edge::IdentityView& view) : view_(view) {}

  events::Event make(const std::string& type, const std::string& stream, const std::string& tenant,
                     const std::string& data) {
    events::NewEvent n{.id = events::new_event_id(),
                       .type = events::EventType(type),
                       .data = events::Payload::parse(data),
                       .meta = events::Payload(),
                       .occurred_at = events::now_ms()};
    return events::record(n, events::StreamId(stream), events::StreamVersion(0),
                          events::Position(++position_), events::TenantId(tenant),
                          events::now_ms());
  }
  bool apply(const std::string& type, const std::string& stream, const std::string& tenant,
             const std::string& data) {
    return view_.apply(make(type, stream, tenant, data));
  }

  void tenant(const std::string& t, const std::string& services = R"(["*"])",
              const std::string& disabled = "[]") {
    apply("identity.tenant.created", "tenant-" + t, t,
          R"({"name":")" + t + R"(","services":)" + services + R"(,"disabled":)" + disabled + "}");
  }
  void user_event(const std::string& what, const std::string& tenant, const std::string& user_id,
                  std::int64_t security_version) {
    apply("identity.user." + what, "user-" + user_id, tenant,
          R"({"security_version":)" + std::to_string(security_version) + "}");
  }
  void api_key(const std::string& tenant, const std::string& key_id, const std::string& prefix,
               const std::string& hash, const std::string& roles, const std::string& scopes,
               std::int64_t expires_at = 0) {
    apply("identity.apikey.issued", "apikey-" + key_id, tenant,
          R"({"key_id":")" + key_id + R"(","prefix":")" + prefix + R"(","key_hash":")" + hash +
              R"(","name":"k","owner":"u1","roles":)" + roles + R"(,"scopes":)" + scopes +
              R"(,"expires_at":)" + std::to_string(expires_at) + "}");
  }
  void revoke_session(const std::string& tenant, const std::string& sid,
                      std::int64_t access_expires_at) {
    apply("identity.session.revoked", "session-" + sid, tenant,
          R"({"session_id":")" + sid +
              R"(","user_id":"u1","reason":"logout","access_expires_at":)" +
              std::to_string(access_expires_at) + "}");
  }
  std::int64_t position() const { return position_; }

 private:
  edge::IdentityView& view_;
  std::int64_t position_ = 0;
};

}  // namespace sb::edgetest
