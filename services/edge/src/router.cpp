#include "switchboard/edge/router.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "switchboard/edge/http.hpp"

namespace sb::edge {

const char* to_string(RouteError error) {
  switch (error) {
    case RouteError::unknown_service:
      return "unknown_service";
    case RouteError::unknown_route:
      return "unknown_route";
    case RouteError::method_not_allowed:
      return "method_not_allowed";
    case RouteError::unknown_version:
      return "unknown_version";
    case RouteError::no_live_instance:
      return "no_live_instance";
  }
  return "unknown";
}

struct CompiledEndpoint {
  PathTemplate path;
  registry::Endpoint endpoint;
};

struct CompiledVersion {
  std::string version;
  int weight = 0;
  std::vector<registry::RouteInstance> instances;
  std::vector<CompiledEndpoint> endpoints;  // most specific first
  std::shared_ptr<std::atomic<std::uint64_t>> next =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

struct Router::Compiled {
  std::shared_ptr<const registry::RouteTable> table;
  std::map<std::string, std::vector<CompiledVersion>, std::less<>> services;
};

Router::Router() : compiled_(std::make_shared<Compiled>()) {
  auto c = std::make_shared<Compiled>();
  c->table = std::make_shared<registry::RouteTable>();
  compiled_ = std::move(c);
}
Router::~Router() = default;

std::shared_ptr<const Router::Compiled> Router::compiled() const {
  std::lock_guard lock(mu_);
  return compiled_;
}

bool Router::update(const registry::RouteTable& table) {
  if (table.version <= version() && version() != 0) return false;
  auto c = std::make_shared<Compiled>();
  c->table = std::make_shared<registry::RouteTable>(table);
  for (const auto& s : table.services) {
    auto& versions = c->services[s.name];
    for (const auto& v : s.versions) {
      CompiledVersion cv;
      cv.version = v.version;
      cv.weight = v.weight;
      cv.instances = v.instances;
      for (const auto& ep : v.endpoints) cv.endpoints.push_back({PathTemplate(ep.path), ep});
      // Literal segments beat parameters, position by position.
      std::stable_sort(cv.endpoints.begin(), cv.endpoints.end(), [](const auto& a, const auto& b) {
        return a.path.more_specific_than(b.path);
      });
      versions.push_back(std::move(cv));
    }
  }
  std::lock_guard lock(mu_);
  if (compiled_->table->version > table.version) return false;
  compiled_ = std::move(c);
  return true;
}

std::int64_t Router::version() const {
  return compiled()->table->version;
}

std::shared_ptr<const registry::RouteTable> Router::table() const {
  return compiled()->table;
}

bool Router::knows(std::string_view service) const {
  auto c = compiled();
  return c->services.find(service) != c->services.end();
}

namespace {

// The instance of `v` to call: an AMQP instance stands for the version's
// queue; HTTP instances go round-robin, skipping unhealthy ones.
// Ejection only steers traffic between instances: when every HTTP instance
// of the version is ejected, they are all tried anyway (like Envoy's panic
// threshold), so a transient failure of the only instance is not turned into
// an outage; a dead one still fails its calls honestly (503/502).
std::optional<registry::RouteInstance> pick_instance(const CompiledVersion& v,
                                                     const Router::Health& healthy) {
  const auto n = v.instances.size();
  if (n == 0) return std::nullopt;
  const auto start = v.next->fetch_add(1, std::memory_order_relaxed);
  for (std::size_t k = 0; k < n; ++k) {
    const auto& inst = v.instances[(start + k) % n];
    if (inst.transport.kind == registry::Transport::Kind::amqp) return inst;
    if (!healthy || healthy(inst.instance_id)) return inst;
  }
  return v.instances[start % n];  // all ejected: panic mode
}

bool has_usable(const CompiledVersion& v, const Router::Health&) {
  return !v.instances.empty();
}

// Weighted draw among candidates (indices into versions).
const CompiledVersion* draw_version(const std::vector<const CompiledVersion*>& candidates,
                                    double draw) {
  long long total = 0;
  for (const auto* v : candidates) total += std::max(0, v->weight);
  if (total <= 0) return nullptr;
  auto point = static_cast<long long>(draw * static_cast<double>(total));
  if (point >= total) point = total - 1;
  for (const auto* v : candidates) {
    point -= std::max(0, v->weight);
    if (point < 0) return v;
  }
  return candidates.back();
}

}  // namespace

RouteResult Router::route(std::string_view service, std::string_view method, std::string_view path,
                          std::optional<std::string_view> version, double draw,
                          const Health& healthy) const {
  auto c = compiled();
  RouteResult r;
  auto it = c->services.find(service);
  if (it == c->services.end()) {
    r.error = RouteError::unknown_service;
    return r;
  }
  struct Match {
    const CompiledVersion* version;
    const CompiledEndpoint* endpoint;
    Params params;
  };
  std::vector<Match> matches;
  std::vector<std::string> allowed;
  bool version_found = !version.has_value();
  for (const auto& v : it->second) {
    if (version && v.version != *version) continue;
    version_found = true;
    Params params;
    for (const auto& ep : v.endpoints) {
      if (!ep.path.match(path, params)) continue;
      if (ep.endpoint.method == method) {
        matches.push_back({&v, &ep, std::move(params)});
        break;
      }
      if (std::find(allowed.begin(), allowed.end(), ep.endpoint.method) == allowed.end()) {
        allowed.push_back(ep.endpoint.method);
      }
    }
  }
  if (!version_found) {
    r.error = RouteError::unknown_version;
    return r;
  }
  if (matches.empty()) {
    if (it->second.empty()) {
      r.error = RouteError::no_live_instance;
    } else if (!allowed.empty()) {
      r.error = RouteError::method_not_allowed;
      std::sort(allowed.begin(), allowed.end());
      r.allowed = std::move(allowed);
    } else {
      r.error = RouteError::unknown_route;
    }
    return r;
  }
  std::vector<const CompiledVersion*> candidates;
  for (const auto& m : matches) {
    if (has_usable(*m.version, healthy) && (version || m.version->weight > 0)) {
      candidates.push_back(m.version);
    }
  }
  const CompiledVersion* chosen = nullptr;
  if (version) {
    chosen = candidates.empty() ? nullptr : candidates.front();
  } else {
    chosen = draw_version(candidates, draw);
  }
  if (!chosen) {
    r.error = RouteError::no_live_instance;
    return r;
  }
  auto inst = pick_instance(*chosen, healthy);
  if (!inst) {
    r.error = RouteError::no_live_instance;
    return r;
  }
  for (auto& m : matches) {
    if (m.version != chosen) continue;
    Target t;
    t.service = std::string(service);
    t.version = chosen->version;
    t.endpoint = m.endpoint->endpoint;
    t.params = std::move(m.params);
    t.transport = inst->transport;
    if (inst->transport.kind == registry::Transport::Kind::http) t.instance_id = inst->instance_id;
    r.target = std::move(t);
  }
  return r;
}

RouteResult Router::pick(std::string_view service, std::optional<std::string_view> version,
                         double draw, const Health& healthy) const {
  auto c = compiled();
  RouteResult r;
  auto it = c->services.find(service);
  if (it == c->services.end()) {
    r.error = RouteError::unknown_service;
    return r;
  }
  std::vector<const CompiledVersion*> candidates;
  bool version_found = !version.has_value();
  for (const auto& v : it->second) {
    if (version && v.version != *version) continue;
    version_found = true;
    if (has_usable(v, healthy) && (version || v.weight > 0)) candidates.push_back(&v);
  }
  if (!version_found) {
    r.error = RouteError::unknown_version;
    return r;
  }
  const CompiledVersion* chosen = version ? (candidates.empty() ? nullptr : candidates.front())
                                          : draw_version(candidates, draw);
  std::optional<registry::RouteInstance> inst;
  if (chosen) inst = pick_instance(*chosen, healthy);
  if (!inst) {
    r.error = RouteError::no_live_instance;
    return r;
  }
  Target t;
  t.service = std::string(service);
  t.version = chosen->version;
  t.transport = inst->transport;
  if (inst->transport.kind == registry::Transport::Kind::http) t.instance_id = inst->instance_id;
  r.target = std::move(t);
  return r;
}

}  // namespace sb::edge
