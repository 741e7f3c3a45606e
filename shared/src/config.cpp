#include "switchboard/shared/config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "switchboard/shared/json.hpp"

extern char** environ;

namespace sb::config {
namespace {

const char* type_name(Type t) {
  switch (t) {
    case Type::string:
      return "string";
    case Type::integer:
      return "integer";
    case Type::boolean:
      return "boolean";
    case Type::number:
      return "number";
    case Type::duration:
      return "duration";
  }
  return "?";
}

std::optional<bool> parse_bool(std::string_view t) {
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  return std::nullopt;
}

std::optional<std::int64_t> parse_int(std::string_view t) {
  if (t.empty()) return std::nullopt;
  std::string s(t);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return std::nullopt;
  return static_cast<std::int64_t>(v);
}

std::optional<double> parse_double(std::string_view t) {
  if (t.empty()) return std::nullopt;
  std::string s(t);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Checks that `text` parses as `type`; throws naming the key and source.
void validate(const Key& key, const std::string& text, const std::string& source) {
  bool ok = true;
  switch (key.type) {
    case Type::string:
      break;
    case Type::integer:
      ok = parse_int(text).has_value();
      break;
    case Type::boolean:
      ok = parse_bool(text).has_value();
      break;
    case Type::number:
      ok = parse_double(text).has_value();
      break;
    case Type::duration:
      try {
        parse_duration(text);
      } catch (const std::invalid_argument&) {
        ok = false;
      }
      break;
  }
  if (!ok) {
    throw Error(key.name, std::string("expected a ") + type_name(key.type) + ", got '" +
                              (key.secret ? std::string("***") : text) + "' (from " + source + ")");
  }
}

// Flattens a JSON object into dotted keys with textual values.
void flatten(const rapidjson::Value& v, const std::string& prefix,
             std::map<std::string, std::string>& out) {
  for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
    std::string name = prefix.empty() ? it->name.GetString() : prefix + "." + it->name.GetString();
    const auto& x = it->value;
    if (x.IsObject()) {
      flatten(x, name, out);
    } else if (x.IsString()) {
      out[name] = std::string(x.GetString(), x.GetStringLength());
    } else if (x.IsBool()) {
      out[name] = x.GetBool() ? "true" : "false";
    } else if (x.IsInt64()) {
      out[name] = std::to_string(x.GetInt64());
    } else if (x.IsNumber()) {
      std::ostringstream os;
      os.precision(17);
      os << x.GetDouble();
      out[name] = os.str();
    } else {
      throw Error(name, "must be a string, number, boolean or object");
    }
  }
}

}  // namespace

Schema& Schema::add(Key key) {
  if (find(key.name) != nullptr) throw Error(key.name, "declared twice in the schema");
  for (const auto& k : keys_) {
    if (env_name("", k.name) == env_name("", key.name)) {
      throw Error(key.name, "clashes with '" + k.name + "' in the environment");
    }
  }
  keys_.push_back(std::move(key));
  return *this;
}

Schema& Schema::required(std::string name, Type type, std::string help, bool secret) {
  return add(Key{std::move(name), type, true, std::nullopt, std::move(help), secret});
}

Schema& Schema::optional(std::string name, Type type, std::string default_value, std::string help) {
  return add(Key{std::move(name), type, false, std::move(default_value), std::move(help), false});
}

Schema& Schema::merge(const std::string& prefix, const Schema& other) {
  for (auto k : other.keys_) {
    k.name = prefix + "." + k.name;
    add(std::move(k));
  }
  return *this;
}

const Key* Schema::find(std::string_view name) const {
  auto it = std::find_if(keys_.begin(), keys_.end(), [&](const Key& k) { return k.name == name; });
  return it == keys_.end() ? nullptr : &*it;
}

std::string env_name(std::string_view prefix, std::string_view key) {
  std::string out(prefix);
  for (char c : key) {
    out += (c == '.' || c == '-') ? '_'
                                  : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::chrono::milliseconds parse_duration(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[i])) != 0 || text[i] == '.'))
    ++i;
  auto number = parse_double(text.substr(0, i));
  std::string_view unit = text.substr(i);
  if (!number || *number < 0)
    throw std::invalid_argument("bad duration '" + std::string(text) + "'");
  double ms = 0;
  if (unit.empty() || unit == "ms") {
    ms = *number;
  } else if (unit == "s") {
    ms = *number * 1000;
  } else if (unit == "m") {
    ms = *number * 60'000;
  } else if (unit == "h") {
    ms = *number * 3'600'000;
  } else {
    throw std::invalid_argument("bad duration unit in '" + std::string(text) + "' (ms, s, m, h)");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

Config Config::load(const Schema& schema, const std::string& file,
                    const std::map<std::string, std::string>& env, std::string_view env_prefix) {
  Config cfg;
  cfg.schema_ = schema;
  std::map<std::string, std::string> from_file;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) throw Error("--config", "cannot read file '" + file + "'");
    std::stringstream ss;
    ss << in.rdbuf();
    rapidjson::Document doc;
    try {
      doc = json::parse(ss.str());
    } catch (const json::Error& e) {
      throw Error("--config", file + ": " + e.what() + " at offset " + std::to_string(e.offset()));
    }
    if (!doc.IsObject()) throw Error("--config", file + ": the top level must be an object");
    flatten(doc, "", from_file);
    for (const auto& [name, text] : from_file) {
      if (schema.find(name) == nullptr) throw Error(name, "unknown key in " + file);
    }
  }
  for (const auto& key : schema.keys()) {
    std::string env_key = env_name(env_prefix, key.name);
    Value v;
    if (auto e = env.find(env_key); e != env.end()) {
      v = Value{e->second, "env " + env_key};
    } else if (auto f = from_file.find(key.name); f != from_file.end()) {
      v = Value{f->second, "file"};
    } else if (key.default_value) {
      v = Value{*key.default_value, "default"};
    } else if (key.required) {
      throw Error(key.name, "required but not set (set it in the config file or " + env_key + ")");
    } else {
      continue;
    }
    validate(key, v.text, v.source);
    cfg.values_.emplace(key.name, std::move(v));
  }
  return cfg;
}

std::optional<std::string> config_file_argument(int argc, const char* const* argv) {
  std::optional<std::string> file;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      file = std::string(a.substr(9));
    } else {
      throw Error("argv", "unknown argument '" + std::string(a) + "' (usage: --config FILE)");
    }
  }
  return file;
}

Config Config::load_for_process(const Schema& schema, int argc, const char* const* argv,
                                std::string_view env_prefix) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  auto file = config_file_argument(argc, argv);
  if (!file) {
    if (auto it = env.find(std::string(env_prefix) + "CONFIG"); it != env.end()) file = it->second;
  }
  return load(schema, file.value_or(""), env, env_prefix);
}

const Config::Value& Config::value(std::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    if (schema_.find(key) == nullptr) throw Error(std::string(key), "not declared in the schema");
    throw Error(std::string(key), "not set");
  }
  return it->second;
}

bool Config::has(std::string_view key) const {
  return values_.find(key) != values_.end();
}
std::string Config::get_string(std::string_view key) const {
  return value(key).text;
}
namespace {
template <class T>
T checked(std::optional<T> v, std::string_view key, const char* what) {
  if (!v) throw Error(std::string(key), std::string("is not ") + what);
  return *v;
}
}  // namespace

std::int64_t Config::get_int(std::string_view key) const {
  return checked(parse_int(value(key).text), key, "an integer");
}
bool Config::get_bool(std::string_view key) const {
  return checked(parse_bool(value(key).text), key, "a boolean");
}
double Config::get_number(std::string_view key) const {
  return checked(parse_double(value(key).text), key, "a number");
}
std::chrono::milliseconds Config::get_duration(std::string_view key) const {
  return parse_duration(value(key).text);
}
std::string Config::source(std::string_view key) const {
  return value(key).source;
}

std::string Config::describe() const {
  std::string out;
  for (const auto& key : schema_.keys()) {
    auto it = values_.find(key.name);
    if (it == values_.end()) continue;
    out += key.name + " = " + (key.secret ? std::string("***") : it->second.text) + " (" +
           it->second.source + ")\n";
  }
  return out;
}

}  // namespace sb::config
