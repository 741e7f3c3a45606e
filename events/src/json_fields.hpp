#pragma once
// Reading and writing the library's JSON forms: field access that turns
// strong-type errors into sb::json::Error naming the field, and a small
// writer that splices already-serialised JSON (payloads, schemas) in as is.

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>

#include "switchboard/events/types.hpp"
#include "switchboard/shared/json.hpp"

namespace sb::events::detail {

inline std::string path_of(std::string_view key) {
  return "/" + std::string(key);
}

/// Rethrows `error` as if it happened below `prefix` (e.g. "/versions/2").
[[noreturn]] inline void rethrow_under(const std::string& prefix, const sb::json::Error& error) {
  throw sb::json::Error(error.what(), prefix + error.path(), error.offset());
}

template <class T>
T require_as(const rapidjson::Value& object, std::string_view key) {
  auto text = sb::json::require_string(object, key);
  try {
    return T(std::move(text));
  } catch (const InvalidValue& e) {
    throw sb::json::Error("field '" + std::string(key) + "': " + e.what(), path_of(key));
  }
}

template <class T>
std::optional<T> optional_as(const rapidjson::Value& object, std::string_view key) {
  if (!sb::json::optional_string(object, key)) return std::nullopt;
  return require_as<T>(object, key);
}

inline bool optional_bool(const rapidjson::Value& object, std::string_view key, bool fallback) {
  const auto* v = sb::json::find(object, key);
  if (v == nullptr || v->IsNull()) return fallback;
  return sb::json::require_bool(object, key);
}

inline const rapidjson::Value& require_kind(const rapidjson::Value& object, std::string_view key,
                                            rapidjson::Type type, const char* type_name) {
  const auto& v = sb::json::require(object, key);
  const bool ok = type == rapidjson::kTrueType ? v.IsBool() : v.GetType() == type;
  if (!ok) {
    throw sb::json::Error("field '" + std::string(key) + "' must be " + type_name, path_of(key));
  }
  return v;
}

/// Builds one JSON object as text.
class ObjectWriter {
 public:
  ObjectWriter() { out_.reserve(256); }
  void string(std::string_view key, std::string_view value) {
    name(key);
    sb::json::append_quoted(out_, value);
  }
  void integer(std::string_view key, std::int64_t value) {
    name(key);
    out_ += std::to_string(value);
  }
  void boolean(std::string_view key, bool value) {
    name(key);
    out_ += value ? "true" : "false";
  }
  /// `json_text` must be valid, compact JSON.
  void raw(std::string_view key, std::string_view json_text) {
    name(key);
    out_ += json_text;
  }
  template <class Range, class Project>
  void string_array(std::string_view key, const Range& items, Project project) {
    name(key);
    out_ += '[';
    bool first = true;
    for (const auto& item : items) {
      if (!first) out_ += ',';
      first = false;
      sb::json::append_quoted(out_, project(item));
    }
    out_ += ']';
  }
  template <class T>
  void optional(std::string_view key, const std::optional<T>& value) {
    if (value) string(key, value->value());
  }
  std::string finish() && {
    if (out_.empty()) out_ += '{';
    out_ += '}';
    return std::move(out_);
  }

 private:
  void name(std::string_view key) {
    out_ += out_.empty() ? '{' : ',';
    sb::json::append_quoted(out_, key);
    out_ += ':';
  }
  std::string out_;
};

}  // namespace sb::events::detail
