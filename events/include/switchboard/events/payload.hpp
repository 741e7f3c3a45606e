#pragma once
// An immutable JSON value (an event's `data` or `meta`, a command body) that
// is cheap to copy: copies share one representation. It keeps the compact
// text (what is stored, published and hashed) and a parsed document, made on
// first use when the payload was built from text that is already known to
// be valid (rows read back from the store), so forwarding an event never
// parses its data.

#include <rapidjson/document.h>

#include <cstddef>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>

namespace sb::events {

class Payload {
 public:
  /// The empty object `{}`.
  Payload();

  /// Parses and keeps the compact form; throws sb::json::Error.
  static Payload parse(std::string_view text);
  /// Takes text that an earlier parse() produced or a trusted writer stored,
  /// without checking it; it is parsed on the first value() (which throws
  /// sb::json::Error then if it was not JSON after all).
  static Payload from_trusted_text(std::string text);
  static Payload from_value(const rapidjson::Value& value);
  static Payload from_document(rapidjson::Document&& document);

  /// Compact JSON text.
  const std::string& text() const noexcept;
  std::size_t size_bytes() const noexcept { return text().size(); }
  /// The parsed value, shared by all copies; safe to read from many threads.
  const rapidjson::Value& value() const;
  /// A deep, mutable copy (for upcasters and edits).
  rapidjson::Document to_document() const;
  bool is_object() const { return value().IsObject(); }

  /// Same JSON value (object member order does not matter).
  friend bool operator==(const Payload& a, const Payload& b);
  friend std::ostream& operator<<(std::ostream& os, const Payload& p) { return os << p.text(); }

 private:
  struct Rep;
  explicit Payload(std::shared_ptr<const Rep> rep) : rep_(std::move(rep)) {}
  std::shared_ptr<const Rep> rep_;
};

}  // namespace sb::events
