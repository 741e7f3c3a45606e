#pragma once
// Small text helpers for HTTP-ish strings: ASCII case, integers, percent
// encoding, query strings, and path templates ("/orders/{id}") — one
// implementation for the edge, the plugin SDK and the tests.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb::text {

std::string lower(std::string_view s);
std::string upper(std::string_view s);
bool iequals(std::string_view a, std::string_view b);

/// Without leading and trailing spaces and tabs.
std::string_view trim(std::string_view s);
/// The trimmed, non-empty items of a `sep`-separated list ("a, b,,c").
std::vector<std::string_view> split_list(std::string_view s, char sep = ',');
/// Whether a comma-separated header value ("keep-alive, Upgrade") lists
/// `token`, compared case-insensitively. No allocation.
bool has_token(std::string_view list, std::string_view token);

/// A whole decimal integer (surrounding spaces and tabs allowed).
std::optional<std::int64_t> parse_int(std::string_view s);

/// Decodes %XX; nullopt for a malformed escape. '+' stays '+'.
std::optional<std::string> percent_decode(std::string_view s);
/// Decodes %XX, keeping malformed escapes as they are; '+' becomes a space
/// when asked (query strings).
std::string percent_decode_lenient(std::string_view s, bool plus_is_space = false);

/// One query parameter's decoded value ('+' is a space), first occurrence.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

using Params = std::vector<std::pair<std::string, std::string>>;

/// "/orders/{id}/lines/{line}": literal segments and `{name}` parameters,
/// each matching one non-empty segment. "/" is the root.
class PathTemplate {
 public:
  /// Throws std::invalid_argument for a template that does not start with
  /// '/', has an empty, unclosed or repeated parameter.
  explicit PathTemplate(std::string_view text);
  /// Matches a raw path (percent-encoded, no query); parameters come out
  /// decoded. False for no match or a malformed escape in a parameter.
  bool match(std::string_view path, Params& params) const;
  const std::string& text() const noexcept { return text_; }
  /// One flag per segment, true for literals: more literals earlier is the
  /// more specific template ("/items/new" beats "/items/{id}").
  const std::vector<bool>& literal_mask() const noexcept { return literal_; }
  /// Whether this template is more specific than `other` (see literal_mask).
  bool more_specific_than(const PathTemplate& other) const;

 private:
  std::string text_;
  std::vector<std::string> segments_;  // literal text or parameter name
  std::vector<bool> literal_;
};

}  // namespace sb::text
