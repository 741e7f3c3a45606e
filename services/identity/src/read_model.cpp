// The `identity` read model: tenants, users, custom roles, API keys and
// tenant config, folded from identity.* events into tables of the service's
// database (projection generations, projections/). No hash is ever copied
// into it: the tables have no column for one.
#include "read_model.hpp"

#include <rapidjson/document.h>

#include "switchboard/events/time.hpp"
#include "switchboard/identity/model.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::identity {
namespace {

using projections::Tables;

std::string text(const rapidjson::Value& d, const char* key) {
  return json::optional_string(d, key).value_or("");
}

/// The member as compact JSON text ("[]" when absent).
std::string json_member(const rapidjson::Value& d, const char* key, const char* fallback = "[]") {
  const auto* v = json::find(d, key);
  return v ? json::to_string(*v) : std::string(fallback);
}

std::int64_t integer(const rapidjson::Value& d, const char* key) {
  return json::optional_int64(d, key).value_or(0);
}

std::string at(const events::Event& e) {
  return events::format_rfc3339_ms(e.recorded_at);
}

}  // namespace

std::shared_ptr<projections::Projection> read_model() {
  projections::ProjectionBuilder b{std::string(kReadModel)};
  b.table("tenants").table("users").table("roles").table("api_keys").table("config");
  b.schema(
      "CREATE TABLE {tenants} (tenant text PRIMARY KEY, name text NOT NULL, "
      "services text NOT NULL, disabled text NOT NULL, suspended boolean NOT NULL, "
      "reason text, position bigint NOT NULL, created_at text NOT NULL)");
  b.schema(
      "CREATE TABLE {users} (tenant text NOT NULL, user_id text NOT NULL, "
      "username text NOT NULL, email text NOT NULL, roles text NOT NULL, invited boolean NOT NULL, "
      "active boolean NOT NULL, security_version bigint NOT NULL, position bigint NOT NULL, "
      "created_at text NOT NULL, updated_at text NOT NULL, PRIMARY KEY (tenant, user_id))");
  b.schema("CREATE INDEX ON {users} (tenant, username)");
  b.schema(
      "CREATE TABLE {roles} (tenant text NOT NULL, role text NOT NULL, permissions text NOT NULL, "
      "position bigint NOT NULL, updated_at text NOT NULL, PRIMARY KEY (tenant, role))");
  b.schema(
      "CREATE TABLE {api_keys} (tenant text NOT NULL, key_id text NOT NULL, prefix text NOT NULL, "
      "name text NOT NULL, owner text NOT NULL, roles text NOT NULL, scopes text NOT NULL, "
      "expires_at bigint NOT NULL, revoked boolean NOT NULL, position bigint NOT NULL, "
      "created_at text NOT NULL, PRIMARY KEY (tenant, key_id))");
  b.schema(
      "CREATE TABLE {config} (tenant text NOT NULL, key text NOT NULL, value text NOT NULL, "
      "position bigint NOT NULL, updated_at text NOT NULL, PRIMARY KEY (tenant, key))");

  using HR = events::HandleResult;
  using Tx = pg::Transaction;
  // Tenants.
  b.on(std::string(kTenantCreated), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(
        t.sql("INSERT INTO {tenants} (tenant, name, services, disabled, suspended, position, "
              "created_at) VALUES ($1, $2, $3, $4, false, $5, $6) ON CONFLICT (tenant) DO NOTHING"),
        {e.tenant.value(), text(d, "name"), json_member(d, "services"), json_member(d, "disabled"),
         e.position.value(), at(e)});
    return HR::handled;
  });
  b.on(std::string(kTenantServicesChanged), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(
        t.sql("UPDATE {tenants} SET services = $2, disabled = $3, position = $4 WHERE tenant = $1"),
        {e.tenant.value(), json_member(d, "services"), json_member(d, "disabled"),
         e.position.value()});
    return HR::handled;
  });
  auto suspension = [](bool suspended) {
    return [suspended](Tx& tx, const Tables& t, const events::Event& e) {
      tx.exec(
          t.sql(
              "UPDATE {tenants} SET suspended = $2, reason = $3, position = $4 WHERE tenant = $1"),
          {e.tenant.value(), suspended, text(e.data.value(), "reason"), e.position.value()});
      return HR::handled;
    };
  };
  b.on(std::string(kTenantSuspended), suspension(true));
  b.on(std::string(kTenantReinstated), suspension(false));

  // Users. The user id is the stream's suffix for every event but the first.
  auto user_of = [](const events::Event& e) {
    const auto& s = e.stream.value();
    return s.substr(s.find('-') + 1);
  };
  b.on(std::string(kUserRegistered), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    const auto* invited = json::find(d, "invited");
    tx.exec(t.sql("INSERT INTO {users} (tenant, user_id, username, email, roles, invited, active, "
                  "security_version, position, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, "
                  "$6, true, 0, $7, $8, $8) ON CONFLICT (tenant, user_id) DO NOTHING"),
            {e.tenant.value(), text(d, "user_id"), text(d, "username"), text(d, "email"),
             json_member(d, "roles"), invited != nullptr && invited->IsBool() && invited->GetBool(),
             e.position.value(), at(e)});
    return HR::handled;
  });
  // `extra` lists the data members bound from $5 on.
  auto user_update = [user_of](std::string set_clause, std::vector<const char*> extra) {
    return [user_of, set_clause, extra](Tx& tx, const Tables& t, const events::Event& e) {
      const auto& d = e.data.value();
      pg::Params params{e.tenant.value(), user_of(e), e.position.value(), at(e)};
      for (const char* member : extra) {
        if (std::string_view(member) == "roles") {
          params.add(json_member(d, member));
        } else {
          params.add(integer(d, member));
        }
      }
      // set_clause: one of the constant clauses below, never input.
      tx.exec(t.sql("UPDATE {users} SET " + set_clause +
                    ", position = $3, updated_at = $4 WHERE tenant = $1 AND user_id = $2 "
                    "AND position < $3"),
              params);
      return HR::handled;
    };
  };
  b.on(std::string(kUserInvitationAccepted), user_update("invited = false", {}));
  b.on(std::string(kUserRolesChanged),
       user_update("security_version = $5, roles = $6", {"security_version", "roles"}));
  b.on(std::string(kUserPasswordChanged),
       user_update("security_version = $5", {"security_version"}));
  b.on(std::string(kUserDeactivated),
       user_update("active = false, security_version = $5", {"security_version"}));
  b.on(std::string(kUserReactivated),
       user_update("active = true, security_version = $5", {"security_version"}));

  // Custom roles.
  b.on(std::string(kRoleDefined), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(
        t.sql(
            "INSERT INTO {roles} (tenant, role, permissions, position, updated_at) VALUES ($1, $2, "
            "$3, $4, $5) ON CONFLICT (tenant, role) DO UPDATE SET permissions = "
            "EXCLUDED.permissions, position = EXCLUDED.position, updated_at = EXCLUDED.updated_at"),
        {e.tenant.value(), text(d, "role"), json_member(d, "permissions"), e.position.value(),
         at(e)});
    return HR::handled;
  });
  b.on(std::string(kRoleRemoved), [](Tx& tx, const Tables& t, const events::Event& e) {
    tx.exec(t.sql("DELETE FROM {roles} WHERE tenant = $1 AND role = $2"),
            {e.tenant.value(), text(e.data.value(), "role")});
    return HR::handled;
  });

  // API keys (never the hash).
  b.on(std::string(kApiKeyIssued), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(t.sql("INSERT INTO {api_keys} (tenant, key_id, prefix, name, owner, roles, scopes, "
                  "expires_at, revoked, position, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                  "$8, false, $9, $10) ON CONFLICT (tenant, key_id) DO NOTHING"),
            {e.tenant.value(), text(d, "key_id"), text(d, "prefix"), text(d, "name"),
             text(d, "owner"), json_member(d, "roles"), json_member(d, "scopes"),
             integer(d, "expires_at"), e.position.value(), at(e)});
    return HR::handled;
  });
  b.on(std::string(kApiKeyRevoked), [](Tx& tx, const Tables& t, const events::Event& e) {
    tx.exec(t.sql("UPDATE {api_keys} SET revoked = true, position = $3 WHERE tenant = $1 AND "
                  "key_id = $2"),
            {e.tenant.value(), text(e.data.value(), "key_id"), e.position.value()});
    return HR::handled;
  });

  // Tenant config.
  b.on(std::string(kConfigSet), [](Tx& tx, const Tables& t, const events::Event& e) {
    const auto& d = e.data.value();
    tx.exec(t.sql("INSERT INTO {config} (tenant, key, value, position, updated_at) VALUES ($1, $2, "
                  "$3, $4, $5) ON CONFLICT (tenant, key) DO UPDATE SET value = EXCLUDED.value, "
                  "position = EXCLUDED.position, updated_at = EXCLUDED.updated_at"),
            {e.tenant.value(), text(d, "key"), json_member(d, "value", "null"), e.position.value(),
             at(e)});
    return HR::handled;
  });
  b.on(std::string(kConfigUnset), [](Tx& tx, const Tables& t, const events::Event& e) {
    tx.exec(t.sql("DELETE FROM {config} WHERE tenant = $1 AND key = $2"),
            {e.tenant.value(), text(e.data.value(), "key")});
    return HR::handled;
  });
  return b.build();
}

}  // namespace sb::identity
