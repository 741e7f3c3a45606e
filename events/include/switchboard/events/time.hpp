#pragma once
// Event timestamps: UTC, millisecond precision (the precision is part of the
// type so a value survives a round trip through the envelope exactly), and
// RFC 3339 text such as "2026-11-22T08:00:01.123Z".

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sb::events {

using Timestamp = std::chrono::sys_time<std::chrono::milliseconds>;

/// The current time, truncated to milliseconds.
Timestamp now_ms();

/// "YYYY-MM-DDTHH:MM:SS.mmmZ". Years outside 0000..9999 cannot be written in
/// RFC 3339 and throw InvalidValue.
std::string format_rfc3339_ms(Timestamp at);
/// Finer time points are truncated (floored) to milliseconds first.
std::string format_rfc3339_ms(std::chrono::system_clock::time_point at);

/// Parses RFC 3339 date-time: "T"/"t"/" " separator, 0-9 fractional digits
/// (truncated to milliseconds), "Z"/"z" or a ±hh:mm offset. Leap seconds
/// (":60") are rejected because system_clock cannot represent them.
/// Throws InvalidValue saying what is wrong.
Timestamp parse_rfc3339(std::string_view text);
std::optional<Timestamp> try_parse_rfc3339(std::string_view text) noexcept;

}  // namespace sb::events
