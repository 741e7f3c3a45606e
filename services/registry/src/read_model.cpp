#include "switchboard/registry/read_model.hpp"

#include <map>

#include "switchboard/events/platform_types.hpp"
#include "switchboard/registry/protocol.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::registry {
namespace {

constexpr std::string_view kLive = "live";

std::string replace_all(std::string text, std::string_view from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos;
       at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

// "{services}" etc. -> physical names (identifiers from TableNames, never
// input); values stay parameters.
std::string with_tables(const TableNames& t, std::string text) {
  for (const auto& name : read_model_tables()) {
    text = replace_all(std::move(text), "{" + name + "}", t(name));
  }
  return text;
}

pg::Sql sql(const TableNames& t, std::string text) {
  return pg::Sql::trusted(with_tables(t, std::move(text)));
}

std::string time_text(events::Timestamp at) {
  return events::format_rfc3339_ms(at);
}

void touch_meta(pg::Transaction& tx, const TableNames& t, const events::Event& e) {
  tx.exec(sql(t,
              "INSERT INTO {meta} (id, last_position) VALUES (1, $1) ON CONFLICT (id) DO UPDATE "
              "SET last_position = GREATEST({meta}.last_position, EXCLUDED.last_position)"),
          {e.position.value()});
}

void add_live(pg::Transaction& tx, const TableNames& t, const std::string& service,
              const std::string& version, int delta) {
  tx.exec(sql(t,
              "INSERT INTO {service_versions} (service, version, weight, live_instances) "
              "VALUES ($1, $2, NULL, GREATEST($3::int, 0)) ON CONFLICT (service, version) DO "
              "UPDATE SET live_instances = GREATEST({service_versions}.live_instances + $3::int, "
              "0)"),
          {service, version, delta});
}

std::string json_array(const std::vector<std::string>& objects) {
  std::string out = "[";
  for (std::size_t i = 0; i < objects.size(); ++i) {
    if (i > 0) out += ',';
    out += objects[i];
  }
  return out + "]";
}

events::HandleResult on_registered(pg::Transaction& tx, const TableNames& t,
                                   const events::Event& e) {
  const auto r = parse_registration(e.data.value());
  const auto old = tx.exec(sql(t,
                               "SELECT service, version, status FROM {service_instances} "
                               "WHERE instance_id = $1 FOR UPDATE"),
                           {r.instance_id})
                       .optional_one();
  if (old && (*old)[2].get<std::string_view>() == kLive) {
    add_live(tx, t, (*old)[0].get<std::string>(), (*old)[1].get<std::string>(), -1);
  }
  tx.exec(sql(t,
              "INSERT INTO {services} (name, first_registered_at, updated_position, event_types, "
              "command_types) VALUES ($1, $2::timestamptz, $3, $4::jsonb, $5::jsonb) "
              "ON CONFLICT (name) DO UPDATE SET updated_position = EXCLUDED.updated_position, "
              "event_types = EXCLUDED.event_types, command_types = EXCLUDED.command_types"),
          {r.name, time_text(e.recorded_at), e.position.value(), json_array(r.event_types),
           json_array(r.command_types)});

  std::string subscriptions = "[";
  for (std::size_t i = 0; i < r.subscriptions.size(); ++i) {
    const auto& s = r.subscriptions[i];
    if (i > 0) subscriptions += ',';
    subscriptions += "{\"group\":" + json::quoted(s.group) + ",\"kind\":" + json::quoted(s.kind) +
                     ",\"event_types\":[";
    for (std::size_t j = 0; j < s.event_types.size(); ++j) {
      if (j > 0) subscriptions += ',';
      subscriptions += json::quoted(s.event_types[j]);
    }
    subscriptions += "]}";
  }
  subscriptions += "]";

  tx.exec(
      sql(t,
          "INSERT INTO {service_instances} (instance_id, service, version, tenant, stream, "
          "stream_version, status, transport, base_url, subscriptions, metadata, ttl_ms, "
          "registered_position, registered_at, ended_at, ended_reason, expired_last_seen) "
          "VALUES ($1, $2, $3, $4, $5, $6, 'live', $7, $8, $9::jsonb, $10::jsonb, $11, $12, "
          "$13::timestamptz, NULL, NULL, NULL) ON CONFLICT (instance_id) DO UPDATE SET "
          "service = EXCLUDED.service, version = EXCLUDED.version, tenant = EXCLUDED.tenant, "
          "stream = EXCLUDED.stream, stream_version = EXCLUDED.stream_version, status = 'live', "
          "transport = EXCLUDED.transport, base_url = EXCLUDED.base_url, "
          "subscriptions = EXCLUDED.subscriptions, metadata = EXCLUDED.metadata, "
          "ttl_ms = EXCLUDED.ttl_ms, registered_position = EXCLUDED.registered_position, "
          "registered_at = EXCLUDED.registered_at, ended_at = NULL, ended_reason = NULL, "
          "expired_last_seen = NULL"),
      {r.instance_id, r.name, r.version, e.tenant.value(), e.stream.value(), e.version.value(),
       std::string(to_string(r.transport.kind)),
       r.transport.kind == Transport::Kind::http ? pg::Param(r.transport.base_url)
                                                 : pg::Param(std::nullopt),
       subscriptions, r.metadata, static_cast<std::int64_t>(r.ttl().count()), e.position.value(),
       time_text(e.recorded_at)});

  tx.exec(sql(t, "DELETE FROM {service_endpoints} WHERE instance_id = $1"), {r.instance_id});
  // One row per (method, path): a repeated declaration replaces the earlier one.
  std::map<std::pair<std::string, std::string>, const Endpoint*> unique;
  for (const auto& ep : r.endpoints) unique[{ep.method, ep.path}] = &ep;
  if (!unique.empty()) {
    std::string text =
        with_tables(t,
                    "INSERT INTO {service_endpoints} (instance_id, service, version, "
                    "method, path, roles, public, rate_limit, spec) VALUES ");
    pg::Params params;
    params.add(r.instance_id).add(r.name).add(r.version);
    bool first = true;
    for (const auto& [key, ep] : unique) {
      (void)key;
      if (!first) text += ", ";
      first = false;
      const auto n = params.size();
      std::vector<std::string> roles;
      for (const auto& role : ep->roles) roles.push_back(json::quoted(role));
      std::optional<std::string> limit;
      if (ep->rate_limit) {
        // The spec's own rendering keeps numbers exact.
        auto spec = json::parse(endpoint_json(*ep));
        limit = json::to_string(spec["rate_limit"]);
      }
      params.add(ep->method)
          .add(ep->path)
          .add(json_array(roles))
          .add(ep->is_public)
          .add(limit)
          .add(endpoint_json(*ep));
      auto p = [n](std::size_t i) { return "$" + std::to_string(n + i); };
      text += "($1, $2, $3, " + p(1) + ", " + p(2) + ", " + p(3) + "::jsonb, " + p(4) + ", " +
              p(5) + "::jsonb, " + p(6) + "::jsonb)";
    }
    tx.exec(pg::Sql::trusted(text), params);
  }
  add_live(tx, t, r.name, r.version, +1);
  touch_meta(tx, t, e);
  return events::HandleResult::handled;
}

events::HandleResult on_ended(pg::Transaction& tx, const TableNames& t, const events::Event& e,
                              std::string_view status) {
  const auto& data = e.data.value();
  const auto instance_id = json::require_string(data, "instance_id");
  const auto row = tx.exec(sql(t,
                               "SELECT service, version, status FROM {service_instances} "
                               "WHERE instance_id = $1 FOR UPDATE"),
                           {instance_id})
                       .optional_one();
  if (!row) return events::HandleResult::ignored;
  if ((*row)[2].get<std::string_view>() != kLive) {
    // Already ended (a deregistration after an expiry, say): only where its
    // stream stands changes.
    tx.exec(sql(t, "UPDATE {service_instances} SET stream_version = $2 WHERE instance_id = $1"),
            {instance_id, e.version.value()});
    touch_meta(tx, t, e);
    return events::HandleResult::handled;
  }
  add_live(tx, t, (*row)[0].get<std::string>(), (*row)[1].get<std::string>(), -1);
  std::optional<std::string> reason = json::optional_string(data, "reason");
  std::optional<std::string> last_seen = json::optional_string(data, "last_seen");
  tx.exec(sql(t,
              "UPDATE {service_instances} SET status = $2, ended_at = $3::timestamptz, "
              "ended_reason = $4, expired_last_seen = $5::timestamptz, stream_version = $6 "
              "WHERE instance_id = $1"),
          {instance_id, std::string(status), time_text(e.recorded_at), reason, last_seen,
           e.version.value()});
  tx.exec(sql(t, "DELETE FROM {service_endpoints} WHERE instance_id = $1"), {instance_id});
  touch_meta(tx, t, e);
  return events::HandleResult::handled;
}

events::HandleResult on_weights(pg::Transaction& tx, const TableNames& t, const events::Event& e) {
  const auto& data = e.data.value();
  const auto service = json::require_string(data, "service");
  const auto& weights = json::require(data, "weights");
  if (!weights.IsObject()) throw json::Error("must be an object", "/weights");
  tx.exec(sql(t, "UPDATE {service_versions} SET weight = NULL WHERE service = $1"), {service});
  for (const auto& m : weights.GetObject()) {
    if (!m.value.IsInt()) throw json::Error("must be an integer", "/weights");
    tx.exec(sql(t,
                "INSERT INTO {service_versions} (service, version, weight, live_instances) "
                "VALUES ($1, $2, $3, 0) ON CONFLICT (service, version) DO UPDATE SET weight = "
                "EXCLUDED.weight"),
            {service, std::string(m.name.GetString(), m.name.GetStringLength()), m.value.GetInt()});
  }
  touch_meta(tx, t, e);
  return events::HandleResult::handled;
}

}  // namespace

const std::vector<std::string>& read_model_tables() {
  static const std::vector<std::string> names{"services", "service_instances", "service_endpoints",
                                              "service_versions", "meta"};
  return names;
}

const std::vector<std::string>& read_model_event_types() {
  static const std::vector<std::string> types{std::string(events::kServiceInstanceRegistered),
                                              std::string(events::kServiceInstanceDeregistered),
                                              std::string(events::kServiceInstanceExpired),
                                              std::string(events::kServiceVersionWeightsSet)};
  return types;
}

TableNames TableNames::with_prefix(std::string prefix) {
  return TableNames{[prefix](std::string_view logical) { return prefix + std::string(logical); }};
}

std::vector<std::string> read_model_schema(const TableNames& t) {
  const std::vector<std::string> ddl{
      "CREATE TABLE IF NOT EXISTS {services} ("
      " name text PRIMARY KEY,"
      " first_registered_at timestamptz NOT NULL,"
      " updated_position bigint NOT NULL,"
      " event_types jsonb NOT NULL,"
      " command_types jsonb NOT NULL)",
      "CREATE TABLE IF NOT EXISTS {service_instances} ("
      " instance_id text PRIMARY KEY,"
      " service text NOT NULL,"
      " version text NOT NULL,"
      " tenant text NOT NULL,"
      " stream text NOT NULL,"
      " stream_version bigint NOT NULL,"
      " status text NOT NULL CHECK (status IN ('live', 'deregistered', 'expired')),"
      " transport text NOT NULL CHECK (transport IN ('amqp', 'http')),"
      " base_url text,"
      " subscriptions jsonb NOT NULL,"
      " metadata jsonb NOT NULL,"
      " ttl_ms bigint NOT NULL,"
      " registered_position bigint NOT NULL,"
      " registered_at timestamptz NOT NULL,"
      " ended_at timestamptz,"
      " ended_reason text,"
      " expired_last_seen timestamptz)",
      "CREATE INDEX IF NOT EXISTS {service_instances}_live ON {service_instances} "
      "(service, version) WHERE status = 'live'",
      "CREATE TABLE IF NOT EXISTS {service_endpoints} ("
      " instance_id text NOT NULL,"
      " service text NOT NULL,"
      " version text NOT NULL,"
      " method text NOT NULL,"
      " path text NOT NULL,"
      " roles jsonb NOT NULL,"
      " public boolean NOT NULL,"
      " rate_limit jsonb,"
      " spec jsonb NOT NULL,"
      " PRIMARY KEY (instance_id, method, path))",
      "CREATE INDEX IF NOT EXISTS {service_endpoints}_service ON {service_endpoints} "
      "(service, version)",
      "CREATE TABLE IF NOT EXISTS {service_versions} ("
      " service text NOT NULL,"
      " version text NOT NULL,"
      " weight integer CHECK (weight >= 0),"
      " live_instances integer NOT NULL CHECK (live_instances >= 0),"
      " PRIMARY KEY (service, version))",
      "CREATE TABLE IF NOT EXISTS {meta} ("
      " id integer PRIMARY KEY CHECK (id = 1),"
      " last_position bigint NOT NULL)",
  };
  std::vector<std::string> out;
  out.reserve(ddl.size());
  for (const auto& d : ddl) out.push_back(with_tables(t, d));
  return out;
}

events::HandleResult apply_event(pg::Transaction& tx, const TableNames& t,
                                 const events::Event& event) {
  const auto& type = event.type.value();
  if (type == events::kServiceInstanceRegistered) return on_registered(tx, t, event);
  if (type == events::kServiceInstanceDeregistered) {
    return on_ended(tx, t, event, "deregistered");
  }
  if (type == events::kServiceInstanceExpired) return on_ended(tx, t, event, "expired");
  if (type == events::kServiceVersionWeightsSet) return on_weights(tx, t, event);
  return events::HandleResult::ignored;
}

}  // namespace sb::registry
