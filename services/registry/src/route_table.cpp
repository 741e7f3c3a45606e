#include "switchboard/registry/route_table.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <set>

#include "switchboard/shared/json.hpp"

namespace sb::registry {

RouteTable assemble_route_table(std::int64_t version, const std::vector<LiveInstance>& live,
                                const WeightMap& weights,
                                const std::vector<std::string>& known_services) {
  // service -> version -> instances, newest registration last.
  std::map<std::string, std::map<std::string, std::vector<const LiveInstance*>>> grouped;
  for (const auto& name : known_services) grouped[name];
  for (const auto& i : live) grouped[i.service][i.version].push_back(&i);
  std::set<std::string> weighted;  // services with weights set
  for (const auto& [key, weight] : weights) {
    if (weight) weighted.insert(key.first);
  }

  RouteTable table;
  table.version = version;
  for (auto& [service, versions] : grouped) {
    RouteService rs;
    rs.name = service;
    for (auto& [ver, instances] : versions) {
      RouteVersion rv;
      rv.version = ver;
      if (weighted.contains(service)) {
        auto it = weights.find({service, ver});
        rv.weight = it != weights.end() && it->second ? *it->second : 0;
      } else {
        rv.weight = kDefaultWeight;
      }
      std::sort(instances.begin(), instances.end(), [](const auto* a, const auto* b) {
        return a->registered_position < b->registered_position;
      });
      std::map<std::pair<std::string, std::string>, Endpoint> endpoints;  // (path, method)
      for (const auto* i : instances) {
        rv.instances.push_back({i->instance_id, i->transport});
        for (const auto& ep : i->endpoints) endpoints[{ep.path, ep.method}] = ep;
      }
      std::sort(rv.instances.begin(), rv.instances.end(),
                [](const auto& a, const auto& b) { return a.instance_id < b.instance_id; });
      for (auto& [key, ep] : endpoints) {
        (void)key;
        rv.endpoints.push_back(std::move(ep));
      }
      rs.versions.push_back(std::move(rv));
    }
    table.services.push_back(std::move(rs));
  }
  return table;
}

std::string to_json(const RouteTable& table) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("version");
  w.Int64(table.version);
  w.Key("services");
  w.StartArray();
  for (const auto& s : table.services) {
    w.StartObject();
    w.Key("name");
    w.String(s.name.c_str());
    w.Key("versions");
    w.StartArray();
    for (const auto& v : s.versions) {
      w.StartObject();
      w.Key("version");
      w.String(v.version.c_str());
      w.Key("weight");
      w.Int(v.weight);
      w.Key("instances");
      w.StartArray();
      for (const auto& i : v.instances) {
        w.StartObject();
        w.Key("instance_id");
        w.String(i.instance_id.c_str());
        w.Key("transport");
        w.String(std::string(to_string(i.transport.kind)).c_str());
        if (i.transport.kind == Transport::Kind::http) {
          w.Key("base_url");
          w.String(i.transport.base_url.c_str());
        }
        w.EndObject();
      }
      w.EndArray();
      w.Key("endpoints");
      w.StartArray();
      for (const auto& e : v.endpoints) {
        const auto text = endpoint_json(e);
        w.RawValue(text.data(), text.size(), rapidjson::kObjectType);
      }
      w.EndArray();
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return sb.GetString();
}

RouteTable route_table_from_json(std::string_view text) {
  auto doc = json::parse(text);
  RouteTable table;
  table.version = json::require_int64(doc, "version");
  for (const auto& s : json::require(doc, "services").GetArray()) {
    RouteService rs;
    rs.name = json::require_string(s, "name");
    for (const auto& v : json::require(s, "versions").GetArray()) {
      RouteVersion rv;
      rv.version = json::require_string(v, "version");
      rv.weight = static_cast<int>(json::require_int64(v, "weight"));
      for (const auto& i : json::require(v, "instances").GetArray()) {
        RouteInstance ri;
        ri.instance_id = json::require_string(i, "instance_id");
        if (json::require_string(i, "transport") == "http") {
          ri.transport.kind = Transport::Kind::http;
          ri.transport.base_url = json::require_string(i, "base_url");
        }
        rv.instances.push_back(std::move(ri));
      }
      for (const auto& e : json::require(v, "endpoints").GetArray()) {
        rv.endpoints.push_back(parse_endpoint(e));
      }
      rs.versions.push_back(std::move(rv));
    }
    table.services.push_back(std::move(rs));
  }
  return table;
}

std::int64_t read_model_version(pg::Transaction& tx) {
  auto row = tx.exec("SELECT last_position FROM registry_meta WHERE id = 1").optional_one();
  return row ? (*row)[0].get<std::int64_t>() : 0;
}

ReadModelSnapshot load_snapshot(pg::Transaction& tx) {
  ReadModelSnapshot snap;
  snap.version = read_model_version(tx);
  std::unordered_map<std::string, std::size_t> index;
  for (const auto& row :
       tx.exec("SELECT instance_id, service, version, tenant, stream, stream_version, "
               "registered_position, (extract(epoch FROM registered_at) * 1000)::bigint, ttl_ms, "
               "transport, base_url FROM registry_service_instances WHERE status = 'live' "
               "ORDER BY instance_id")) {
    LiveInstance i;
    i.instance_id = row[0].get<std::string>();
    i.service = row[1].get<std::string>();
    i.version = row[2].get<std::string>();
    i.tenant = row[3].get<std::string>();
    i.stream = row[4].get<std::string>();
    i.stream_version = row[5].get<std::int64_t>();
    i.registered_position = row[6].get<std::int64_t>();
    i.registered_at = events::Timestamp(std::chrono::milliseconds(row[7].get<std::int64_t>()));
    i.ttl = std::chrono::milliseconds(row[8].get<std::int64_t>());
    if (row[9].get<std::string_view>() == "http") {
      i.transport.kind = Transport::Kind::http;
      i.transport.base_url = row[10].get_optional<std::string>().value_or("");
    }
    index.emplace(i.instance_id, snap.live.size());
    snap.live.push_back(std::move(i));
  }
  for (const auto& row : tx.exec("SELECT instance_id, spec::text FROM registry_service_endpoints "
                                 "ORDER BY instance_id, path, method")) {
    auto it = index.find(row[0].get<std::string>());
    if (it == index.end()) continue;
    auto doc = json::parse(row[1].get<std::string_view>());
    snap.live[it->second].endpoints.push_back(parse_endpoint(doc));
  }
  for (const auto& row :
       tx.exec("SELECT service, version, weight FROM registry_service_versions")) {
    snap.weights[{row[0].get<std::string>(), row[1].get<std::string>()}] =
        row[2].get_optional<int>();
  }
  for (const auto& row :
       tx.exec("SELECT name, event_types::text, command_types::text FROM registry_services")) {
    snap.service_types.emplace_back(row[0].get<std::string>(), row[1].get<std::string>(),
                                    row[2].get<std::string>());
  }
  return snap;
}

}  // namespace sb::registry
