#include "switchboard/events/payload.hpp"

#include <rapidjson/error/en.h>

#include <mutex>

#include "switchboard/shared/json.hpp"

namespace sb::events {

struct Payload::Rep {
  std::string text;
  mutable std::once_flag parsed;
  mutable rapidjson::Document doc;
  // Set when trusted text turned out not to be JSON; reported on each access.
  mutable std::string parse_error;
  mutable std::size_t parse_error_offset = 0;

  explicit Rep(std::string t) : text(std::move(t)) {}
  Rep(std::string t, rapidjson::Document&& d) : text(std::move(t)), doc(std::move(d)) {
    std::call_once(parsed, [] {});
  }

  const rapidjson::Value& value() const {
    // No exception escapes call_once: the error is recorded and thrown after.
    std::call_once(parsed, [this] {
      doc.Parse(text.data(), text.size());
      if (doc.HasParseError()) {
        parse_error =
            std::string("malformed JSON: ") + rapidjson::GetParseError_En(doc.GetParseError());
        parse_error_offset = doc.GetErrorOffset();
      }
    });
    if (!parse_error.empty()) throw sb::json::Error(parse_error, "", parse_error_offset);
    return doc;
  }
};

Payload::Payload() {
  // Events without meta are common: share one empty object.
  static const auto kEmpty =
      std::make_shared<const Rep>("{}", rapidjson::Document(rapidjson::kObjectType));
  rep_ = kEmpty;
}

Payload Payload::parse(std::string_view text) {
  auto doc = sb::json::parse(text);
  auto compact = sb::json::to_string(doc);
  return Payload(std::make_shared<const Rep>(std::move(compact), std::move(doc)));
}

Payload Payload::from_trusted_text(std::string text) {
  return Payload(std::make_shared<const Rep>(std::move(text)));
}

Payload Payload::from_value(const rapidjson::Value& value) {
  rapidjson::Document doc;
  doc.CopyFrom(value, doc.GetAllocator());
  return from_document(std::move(doc));
}

Payload Payload::from_document(rapidjson::Document&& document) {
  auto text = sb::json::to_string(document);
  return Payload(std::make_shared<const Rep>(std::move(text), std::move(document)));
}

const std::string& Payload::text() const noexcept {
  return rep_->text;
}

const rapidjson::Value& Payload::value() const {
  return rep_->value();
}

rapidjson::Document Payload::to_document() const {
  rapidjson::Document doc;
  doc.CopyFrom(value(), doc.GetAllocator());
  return doc;
}

bool operator==(const Payload& a, const Payload& b) {
  if (a.rep_ == b.rep_ || a.text() == b.text()) return true;
  return a.value() == b.value();
}

}  // namespace sb::events
