#include "switchboard/edge/redaction.hpp"

#include "switchboard/shared/json.hpp"

namespace sb::edge {

namespace {

constexpr std::string_view kSuffix = "_hash";
constexpr std::string_view kRedacted = "[redacted]";

// Cheap pre-check on the text: a matching member name is followed by
// `_hash"` (or hides behind a \u escape).
bool may_hold_hash(std::string_view text) {
  return text.find("_hash\"") != std::string_view::npos ||
         text.find("\\u") != std::string_view::npos;
}

bool redact(rapidjson::Value& v, rapidjson::Document::AllocatorType& alloc) {
  bool changed = false;
  if (v.IsObject()) {
    for (auto& m : v.GetObject()) {
      if (is_redacted_member({m.name.GetString(), m.name.GetStringLength()})) {
        m.value.SetString(kRedacted.data(), static_cast<rapidjson::SizeType>(kRedacted.size()),
                          alloc);
        changed = true;
      } else {
        changed = redact(m.value, alloc) || changed;
      }
    }
  } else if (v.IsArray()) {
    for (auto& e : v.GetArray()) changed = redact(e, alloc) || changed;
  }
  return changed;
}

}  // namespace

bool is_redacted_member(std::string_view name) {
  return name.size() >= kSuffix.size() && name.substr(name.size() - kSuffix.size()) == kSuffix;
}

std::string redact_hashes(std::string_view data) {
  if (!may_hold_hash(data)) return std::string(data);
  auto doc = json::parse(data);
  if (!redact(doc, doc.GetAllocator())) return std::string(data);
  return json::to_string(doc);
}

events::Event redacted(const events::Event& event) {
  if (!may_hold_hash(event.data.text())) return event;
  auto doc = event.data.to_document();
  if (!redact(doc, doc.GetAllocator())) return event;
  events::Event out = event;
  out.data = events::Payload::from_document(std::move(doc));
  return out;
}

}  // namespace sb::edge
