#pragma once
// Secrets' hashes never leave over HTTP (docs/protocol.md 11.1): in the
// events API, stream and correlation reads and the SSE tail, every member
// of an event's `data` whose name ends in `_hash`, at any depth, is served
// as "[redacted]".

#include <string>
#include <string_view>

#include "switchboard/events/envelope.hpp"

namespace sb::edge {

/// Whether a member name ends in `_hash`.
bool is_redacted_member(std::string_view name);

/// `data` (a JSON value) with every `*_hash` member replaced by
/// "[redacted]"; unchanged (and not parsed) when no member name could match.
/// Throws sb::json::Error for text that is not JSON.
std::string redact_hashes(std::string_view data);

/// The event as served: its data redacted (a cheap copy when nothing is).
events::Event redacted(const events::Event& event);

}  // namespace sb::edge
