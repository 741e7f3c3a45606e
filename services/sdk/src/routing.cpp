#include "switchboard/sdk/routing.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

namespace sb::sdk {
using text::upper;

RouteTemplate::RouteTemplate(std::string pattern) : pattern_(std::move(pattern)), tmpl_(pattern_) {}

std::optional<std::map<std::string, std::string>> RouteTemplate::match(
    std::string_view path) const {
  text::Params params;
  if (!tmpl_.match(path, params)) return std::nullopt;
  return std::map<std::string, std::string>(params.begin(), params.end());
}

void Router::add(std::string method, std::string pattern) {
  routes_.push_back({upper(method), RouteTemplate(std::move(pattern))});
}

std::optional<RouteMatch> Router::match(std::string_view method, std::string_view path,
                                        std::string_view route_hint) const {
  const auto m = upper(method);
  std::optional<RouteMatch> best;
  const std::vector<bool>* best_mask = nullptr;
  for (std::size_t i = 0; i < routes_.size(); ++i) {
    const auto& r = routes_[i];
    if (r.method != m) continue;
    auto params = r.tmpl.match(path);
    if (!params) continue;
    if (!route_hint.empty() && r.tmpl.pattern() == route_hint) {
      // The caller's choice wins over our own ranking (the last such one).
      best = RouteMatch{i, r.tmpl.pattern(), std::move(*params)};
      best_mask = nullptr;
      for (std::size_t j = i + 1; j < routes_.size(); ++j) {
        if (routes_[j].method == m && routes_[j].tmpl.pattern() == route_hint) best->index = j;
      }
      return best;
    }
    const auto& mask = r.tmpl.literal_mask();
    if (best_mask == nullptr ||
        !std::lexicographical_compare(mask.begin(), mask.end(), best_mask->begin(),
                                      best_mask->end())) {
      best = RouteMatch{i, r.tmpl.pattern(), std::move(*params)};
      best_mask = &mask;
    }
  }
  return best;
}

bool Router::matches_other_method(std::string_view method, std::string_view path) const {
  const auto m = upper(method);
  return std::any_of(routes_.begin(), routes_.end(), [&](const Route& r) {
    return r.method != m && r.tmpl.match(path).has_value();
  });
}

}  // namespace sb::sdk
