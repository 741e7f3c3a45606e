#pragma once
// Configuration: a JSON file plus environment overrides, validated against a
// schema at start-up. Keys are dotted paths ("rabbitmq.url"); in the file they
// may be nested objects or dotted names; in the environment a key is
// PREFIX + upper-cased key with '.' → '_' (SB_RABBITMQ_URL). Precedence:
// environment > file > default. Unknown keys in the file, values of the wrong
// type and missing required values are errors that name the key.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sb::config {

enum class Type { string, integer, boolean, number, duration };

struct Key {
  std::string name;
  Type type = Type::string;
  bool required = false;
  std::optional<std::string> default_value;  // textual, parsed like an env value
  std::string help;
  bool secret = false;  // never logged; see Config::describe
};

class Error : public std::runtime_error {
 public:
  Error(const std::string& key, const std::string& message)
      : std::runtime_error("config: " + key + ": " + message), key_(key) {}
  const std::string& key() const noexcept { return key_; }

 private:
  std::string key_;
};

class Schema {
 public:
  Schema& add(Key key);
  Schema& required(std::string name, Type type, std::string help, bool secret = false);
  Schema& optional(std::string name, Type type, std::string default_value, std::string help);
  /// Adds every key of `other` under `prefix` + "." (component sections).
  Schema& merge(const std::string& prefix, const Schema& other);
  const std::vector<Key>& keys() const noexcept { return keys_; }
  const Key* find(std::string_view name) const;

 private:
  std::vector<Key> keys_;
};

/// The environment variable that overrides `key`.
std::string env_name(std::string_view prefix, std::string_view key);

/// Parses "250ms", "2s", "1.5s", "3m", "1h" or a bare integer (milliseconds).
std::chrono::milliseconds parse_duration(std::string_view text);

class Config {
 public:
  /// file: path of a JSON file, or empty. env: the environment to consult.
  static Config load(const Schema& schema, const std::string& file,
                     const std::map<std::string, std::string>& env,
                     std::string_view env_prefix = "SB_");
  /// Reads `--config FILE` (or SB_CONFIG) and the process environment.
  /// Throws Error for `--help`-free unknown arguments too.
  static Config load_for_process(const Schema& schema, int argc, const char* const* argv,
                                 std::string_view env_prefix = "SB_");

  bool has(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  std::int64_t get_int(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  double get_number(std::string_view key) const;
  std::chrono::milliseconds get_duration(std::string_view key) const;
  /// Where a value came from: "env SB_X", "file", "default".
  std::string source(std::string_view key) const;
  /// One line per key: name = value (source); secrets shown as "***".
  std::string describe() const;

 private:
  struct Value {
    std::string text;
    std::string source;
  };
  const Value& value(std::string_view key) const;
  std::map<std::string, Value, std::less<>> values_;
  Schema schema_;
};

/// Command-line arguments we understand: --config FILE; anything else throws.
std::optional<std::string> config_file_argument(int argc, const char* const* argv);

}  // namespace sb::config
