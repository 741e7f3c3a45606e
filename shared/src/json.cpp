#include "switchboard/shared/json.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace sb::json {
namespace {
rapidjson::Value::ConstMemberIterator member(const rapidjson::Value& object, std::string_view key) {
  if (!object.IsObject()) throw Error("expected an object", "");
  return object.FindMember(rapidjson::Value(
      rapidjson::StringRef(key.data(), static_cast<rapidjson::SizeType>(key.size()))));
}

std::string path_of(std::string_view key) {
  return "/" + std::string(key);
}
}  // namespace

const char* type_name(const rapidjson::Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "boolean";
    case rapidjson::kObjectType:
      return "object";
    case rapidjson::kArrayType:
      return "array";
    case rapidjson::kStringType:
      return "string";
    case rapidjson::kNumberType:
      return v.IsInt64() || v.IsUint64() ? "integer" : "number";
  }
  return "value";
}

rapidjson::Document parse(std::string_view text) {
  rapidjson::Document doc;
  // Default flags reject trailing content after the root value too.
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError()) {
    throw Error(std::string("malformed JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()),
                "", doc.GetErrorOffset());
  }
  return doc;
}

std::string to_string(const rapidjson::Value& value) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  value.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

void append_quoted(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string quoted(std::string_view text) {
  std::string out;
  append_quoted(out, text);
  return out;
}

const rapidjson::Value* find(const rapidjson::Value& object, std::string_view key) {
  auto it = member(object, key);
  return it == object.MemberEnd() ? nullptr : &it->value;
}

const rapidjson::Value& require(const rapidjson::Value& object, std::string_view key) {
  const auto* v = find(object, key);
  if (v == nullptr) throw Error("missing required field '" + std::string(key) + "'", path_of(key));
  return *v;
}

std::string require_string(const rapidjson::Value& object, std::string_view key) {
  const auto& v = require(object, key);
  if (!v.IsString()) {
    throw Error(
        "field '" + std::string(key) + "' must be a string, not " + std::string(type_name(v)),
        path_of(key));
  }
  return std::string(v.GetString(), v.GetStringLength());
}

std::int64_t require_int64(const rapidjson::Value& object, std::string_view key) {
  const auto& v = require(object, key);
  if (!v.IsInt64()) {
    throw Error(
        "field '" + std::string(key) + "' must be an integer, not " + std::string(type_name(v)),
        path_of(key));
  }
  return v.GetInt64();
}

bool require_bool(const rapidjson::Value& object, std::string_view key) {
  const auto& v = require(object, key);
  if (!v.IsBool()) {
    throw Error(
        "field '" + std::string(key) + "' must be a boolean, not " + std::string(type_name(v)),
        path_of(key));
  }
  return v.GetBool();
}

std::optional<std::string> optional_string(const rapidjson::Value& object, std::string_view key) {
  const auto* v = find(object, key);
  if (v == nullptr || v->IsNull()) return std::nullopt;
  return require_string(object, key);
}

std::optional<std::int64_t> optional_int64(const rapidjson::Value& object, std::string_view key) {
  const auto* v = find(object, key);
  if (v == nullptr || v->IsNull()) return std::nullopt;
  return require_int64(object, key);
}

}  // namespace sb::json
