#include "switchboard/broker/message.hpp"

#include <array>
#include <cstdio>
#include <random>

namespace sb::broker {

const std::string* Message::header_string(std::string_view key) const {
  auto it = headers.find(key);
  if (it == headers.end()) return nullptr;
  return std::get_if<std::string>(&it->second);
}

std::optional<std::int64_t> Message::header_int(std::string_view key) const {
  auto it = headers.find(key);
  if (it == headers.end()) return std::nullopt;
  if (const auto* i = std::get_if<std::int64_t>(&it->second)) return *i;
  if (const auto* s = std::get_if<std::string>(&it->second)) {
    char* end = nullptr;
    const long long v = std::strtoll(s->c_str(), &end, 10);
    if (end != s->c_str() && *end == '\0') return v;
  }
  return std::nullopt;
}

namespace {

std::string random_hex(std::size_t digits) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  std::string out;
  out.reserve(digits);
  std::uint64_t bits = 0;
  for (std::size_t i = 0; i < digits; ++i) {
    if (i % 16 == 0) bits = rng();
    out.push_back(kHex[bits & 15U]);
    bits >>= 4U;
  }
  return out;
}

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string new_id() {
  return random_hex(32);
}

std::string child_traceparent(std::string_view parent) {
  // version(2)-traceid(32)-spanid(16)-flags(2)
  if (parent.size() == 55 && parent[2] == '-' && parent[35] == '-' && parent[52] == '-' &&
      is_hex(parent.substr(3, 32)) && parent.substr(3, 32) != std::string(32, '0')) {
    return "00-" + std::string(parent.substr(3, 32)) + "-" + random_hex(16) + "-" +
           std::string(parent.substr(53, 2));
  }
  return "00-" + random_hex(32) + "-" + random_hex(16) + "-01";
}

void set_trace(Message& m, const TraceContext& t) {
  if (!t.traceparent.empty()) m.headers[std::string(kTraceparentHeader)] = t.traceparent;
  if (!t.correlation_id.empty()) m.headers[std::string(kCorrelationIdHeader)] = t.correlation_id;
  if (!t.causation_id.empty()) m.headers[std::string(kCausationIdHeader)] = t.causation_id;
}

TraceContext trace_of(const Message& m) {
  TraceContext t;
  if (const auto* s = m.header_string(kTraceparentHeader)) t.traceparent = *s;
  if (const auto* s = m.header_string(kCorrelationIdHeader)) t.correlation_id = *s;
  if (const auto* s = m.header_string(kCausationIdHeader)) t.causation_id = *s;
  return t;
}

TraceContext caused_by(const Message& cause) {
  TraceContext parent = trace_of(cause);
  TraceContext t;
  t.traceparent = child_traceparent(parent.traceparent);
  t.correlation_id = !parent.correlation_id.empty() ? parent.correlation_id : cause.message_id;
  t.causation_id = cause.message_id;
  return t;
}

}  // namespace sb::broker
