#pragma once
// Path templates of endpoints ("/items/{id}") and the router that picks the
// endpoint for a (method, path). Shared by both transports, so a request is
// routed the same way whether it came over AMQP RPC or HTTP upstream.

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/shared/text.hpp"

namespace sb::sdk {

/// Decodes %XX escapes ('+' is kept: it is only a space in query strings).
/// Malformed escapes are kept as they are.
inline std::string percent_decode(std::string_view text, bool plus_is_space = false) {
  return text::percent_decode_lenient(text, plus_is_space);
}

/// A template of '/'-separated segments, each a literal or a parameter
/// "{name}" matching one non-empty segment. "/" is the root.
class RouteTemplate {
 public:
  /// Throws std::invalid_argument for a template that does not start with
  /// '/', has an empty or unclosed parameter, or names a parameter twice.
  explicit RouteTemplate(std::string pattern);

  const std::string& pattern() const noexcept { return pattern_; }
  /// The decoded parameters when `path` (percent-encoding kept, no query)
  /// matches; nullopt otherwise.
  std::optional<std::map<std::string, std::string>> match(std::string_view path) const;
  /// One flag per segment, true for literals: more literals earlier is the
  /// more specific template ("/items/new" beats "/items/{id}").
  const std::vector<bool>& literal_mask() const noexcept { return tmpl_.literal_mask(); }

 private:
  std::string pattern_;
  text::PathTemplate tmpl_;
};

struct RouteMatch {
  std::size_t index = 0;  // the route's index in the order added
  std::string route;      // its template
  std::map<std::string, std::string> params;
};

/// Routes (method, path) to the most specific matching template; between
/// equally specific ones with one method, the one added last wins (as the
/// registry does for one (method, path)).
class Router {
 public:
  /// Throws std::invalid_argument for a bad template.
  void add(std::string method, std::string pattern);
  std::size_t size() const noexcept { return routes_.size(); }

  /// `route_hint` is the template the caller says matched (x-sb-route): used
  /// when it is one of ours and matches the path.
  std::optional<RouteMatch> match(std::string_view method, std::string_view path,
                                  std::string_view route_hint = {}) const;
  /// Whether some route of another method matches the path.
  bool matches_other_method(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    RouteTemplate tmpl;
  };
  std::vector<Route> routes_;
};

}  // namespace sb::sdk
