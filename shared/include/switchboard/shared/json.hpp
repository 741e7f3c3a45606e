#pragma once
// JSON helpers on RapidJSON. RapidJSON is the platform's JSON type (the event
// envelope's `data` is a RapidJSON value), so it is part of this API on
// purpose; the helpers add clear errors that name the offending path.

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sb::json {

/// A JSON input problem: `path` names where (e.g. "/data/items/3"), `offset`
/// is the byte offset for syntax errors.
class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string path, std::size_t offset = 0)
      : std::runtime_error(std::move(message)), path_(std::move(path)), offset_(offset) {}
  const std::string& path() const noexcept { return path_; }
  std::size_t offset() const noexcept { return offset_; }

 private:
  std::string path_;
  std::size_t offset_;
};

/// Parses text; throws Error with the offset and RapidJSON's reason.
rapidjson::Document parse(std::string_view text);

/// "null", "boolean", "object", "array", "string", "integer" or "number":
/// the JSON Schema name of the value's type, for error messages.
const char* type_name(const rapidjson::Value& value);

/// Compact serialisation.
std::string to_string(const rapidjson::Value& value);

/// Appends `text` as a quoted, escaped JSON string.
void append_quoted(std::string& out, std::string_view text);
std::string quoted(std::string_view text);

/// Field access with errors that name the key. `object` must be an object.
const rapidjson::Value& require(const rapidjson::Value& object, std::string_view key);
std::string require_string(const rapidjson::Value& object, std::string_view key);
std::int64_t require_int64(const rapidjson::Value& object, std::string_view key);
bool require_bool(const rapidjson::Value& object, std::string_view key);
const rapidjson::Value* find(const rapidjson::Value& object, std::string_view key);
std::optional<std::string> optional_string(const rapidjson::Value& object, std::string_view key);
std::optional<std::int64_t> optional_int64(const rapidjson::Value& object, std::string_view key);

/// A RapidJSON string value that copies `text` into `alloc`.
inline rapidjson::Value string_value(std::string_view text,
                                     rapidjson::Document::AllocatorType& alloc) {
  return rapidjson::Value(text.data(), static_cast<rapidjson::SizeType>(text.size()), alloc);
}

}  // namespace sb::json
