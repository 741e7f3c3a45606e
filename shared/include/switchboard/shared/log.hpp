#pragma once
// Structured logging: one JSON object per line with timestamp, level,
// service, instance, correlation id, message and the caller's fields.
// Thread-safe. Backed by spdlog privately; no third-party type leaks here.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace sb::log {

enum class Level { trace, debug, info, warn, error, critical, off };

/// Parses "trace", "debug", "info", "warn", "error", "critical", "off".
/// Throws std::invalid_argument naming the bad value.
Level parse_level(std::string_view text);

struct Options {
  std::string service = "switchboard";
  std::string instance;  // empty: a random id is generated
  Level level = Level::info;
  bool json = true;  // false: human-readable lines (for a terminal)
  std::string file;  // empty: stderr
};

/// Configures the process-wide logger. Safe to call again (reconfigures).
void init(const Options& options);
const std::string& instance_id();

/// A value in a structured field.
using FieldValue = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;
struct Field {
  std::string_view key;
  FieldValue value;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  template <class I>
  requires(std::is_integral_v<I>&& std::is_signed_v<I> && !std::is_same_v<I, bool>)
      Field(std::string_view k, I v)
      : key(k), value(static_cast<std::int64_t>(v)) {}
  template <class I>
  requires(std::is_integral_v<I>&& std::is_unsigned_v<I> && !std::is_same_v<I, bool>)
      Field(std::string_view k, I v)
      : key(k), value(static_cast<std::uint64_t>(v)) {}
};
using Fields = std::initializer_list<Field>;

bool enabled(Level level);
void write(Level level, std::string_view message, Fields fields = {});

inline void trace(std::string_view m, Fields f = {}) {
  write(Level::trace, m, f);
}
inline void debug(std::string_view m, Fields f = {}) {
  write(Level::debug, m, f);
}
inline void info(std::string_view m, Fields f = {}) {
  write(Level::info, m, f);
}
inline void warn(std::string_view m, Fields f = {}) {
  write(Level::warn, m, f);
}
inline void error(std::string_view m, Fields f = {}) {
  write(Level::error, m, f);
}
inline void critical(std::string_view m, Fields f = {}) {
  write(Level::critical, m, f);
}

/// The correlation id of the work this thread is doing; included in every
/// log line written while it is set. Scopes nest and restore on exit.
std::string_view correlation_id();
class CorrelationScope {
 public:
  explicit CorrelationScope(std::string id);
  ~CorrelationScope();
  CorrelationScope(const CorrelationScope&) = delete;
  CorrelationScope& operator=(const CorrelationScope&) = delete;

 private:
  std::string previous_;
};

/// Renders one log line as the JSON the logger writes (exposed for tests).
std::string format_json(Level level, std::string_view message, Fields fields);

}  // namespace sb::log
