#include "switchboard/projections/projection.hpp"

#include <cstdint>
#include <cstdio>
#include <set>

namespace sb::projections {
namespace {

// "<projection>_<table>__g" + up to 6 digits must fit in 63 bytes.
constexpr std::size_t kMaxIdentifier = 63;
constexpr std::size_t kGenerationSuffix = 3 + 6;

bool is_identifier(std::string_view s) {
  if (s.empty() || s.front() < 'a' || s.front() > 'z') return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return s.find("__") == std::string_view::npos && s.back() != '_';
}

class BuiltProjection final : public Projection {
 public:
  BuiltProjection(std::string name, std::vector<std::string> tables, std::vector<std::string> ddl,
                  std::map<std::string, ProjectionBuilder::Handler> handlers, int version)
      : name_(std::move(name)),
        tables_(std::move(tables)),
        ddl_(std::move(ddl)),
        handlers_(std::move(handlers)),
        version_(version) {}

  std::string_view name() const override { return name_; }
  int version() const override { return version_; }
  std::vector<std::string> event_types() const override {
    std::vector<std::string> out;
    out.reserve(handlers_.size());
    for (const auto& [type, handler] : handlers_) out.push_back(type);
    return out;
  }
  std::vector<std::string> tables() const override { return tables_; }
  std::vector<std::string> schema(const Tables& t) const override {
    std::vector<std::string> out;
    out.reserve(ddl_.size());
    for (const auto& ddl : ddl_) out.push_back(expand(ddl, t, tables_));
    return out;
  }
  events::HandleResult apply(pg::Transaction& tx, const Tables& t,
                             const events::Event& event) override {
    auto it = handlers_.find(event.type.value());
    if (it == handlers_.end()) return events::HandleResult::ignored;
    return it->second(tx, t, event);
  }

 private:
  std::string name_;
  std::vector<std::string> tables_;
  std::vector<std::string> ddl_;
  std::map<std::string, ProjectionBuilder::Handler> handlers_;
  int version_;
};

void fnv1a(std::uint64_t& h, std::string_view s) {
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  // A separator that cannot occur in the texts, so ("ab","c") != ("a","bc").
  h ^= 0xffU;
  h *= 1099511628211ULL;
}

}  // namespace

std::string Tables::operator()(std::string_view name) const {
  std::string out;
  out.reserve(projection_.size() + name.size() + 12);
  out.append(projection_).append("_").append(name).append("__g");
  out.append(std::to_string(generation_));
  return out;
}

pg::Sql Tables::sql(std::string_view text) const {
  std::string out;
  out.reserve(text.size() + 32);
  std::size_t i = 0;
  while (i < text.size()) {
    const auto open = text.find('{', i);
    if (open == std::string_view::npos) break;
    const auto close = text.find('}', open);
    if (close == std::string_view::npos) break;
    const auto name = text.substr(open + 1, close - open - 1);
    bool table = !name.empty() && name.front() >= 'a' && name.front() <= 'z';
    for (char c : name) {
      table = table && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
    }
    out.append(text.substr(i, open - i));
    if (table) {
      out += (*this)(name);
    } else {
      out.append(text.substr(open, close - open + 1));
    }
    i = close + 1;
  }
  out.append(text.substr(i));
  return pg::Sql::trusted(std::move(out));
}

std::string Tables::view(std::string_view name) const {
  std::string out(projection_);
  out.append("_").append(name);
  return out;
}

std::shared_ptr<Projection> ProjectionBuilder::build() const {
  if (!is_valid_projection_name(name_)) {
    throw Error("projection name '" + name_ + "' is not [a-z][a-z0-9_]* (no '__', max 40)");
  }
  if (tables_.empty()) throw Error("projection '" + name_ + "' declares no table");
  auto p = std::make_shared<BuiltProjection>(name_, tables_, ddl_, handlers_, version_);
  validate(*p);
  return p;
}

std::string expand(std::string_view ddl, const Tables& t, const std::vector<std::string>& tables) {
  std::string out;
  out.reserve(ddl.size() + 32);
  std::size_t i = 0;
  while (i < ddl.size()) {
    if (ddl[i] == '{') {
      const auto close = ddl.find('}', i + 1);
      if (close != std::string_view::npos) {
        const auto key = ddl.substr(i + 1, close - i - 1);
        bool known = false;
        for (const auto& name : tables) {
          if (name == key) {
            known = true;
            break;
          }
        }
        if (known) {
          out.append(t(key));
          i = close + 1;
          continue;
        }
      }
    }
    out.push_back(ddl[i]);
    ++i;
  }
  return out;
}

bool is_valid_projection_name(std::string_view name) {
  return name.size() <= 40 && is_identifier(name);
}

bool is_valid_table_name(std::string_view projection, std::string_view table) {
  return is_identifier(table) &&
         projection.size() + 1 + table.size() + kGenerationSuffix <= kMaxIdentifier;
}

void validate(const Projection& projection) {
  const std::string name(projection.name());
  if (!is_valid_projection_name(name)) {
    throw Error("projection name '" + name + "' is not [a-z][a-z0-9_]* (no '__', max 40)");
  }
  auto tables = projection.tables();
  if (tables.empty()) throw Error("projection '" + name + "' declares no table");
  std::set<std::string> seen;
  for (const auto& t : tables) {
    if (!is_valid_table_name(name, t)) {
      throw Error("projection '" + name + "': table name '" + t +
                  "' is not [a-z][a-z0-9_]* (no '__') or makes '" + name + "_" + t +
                  "__g<N>' longer than 63 bytes");
    }
    if (!seen.insert(t).second) throw Error("projection '" + name + "': table '" + t + "' twice");
  }
}

std::string fingerprint(const Projection& projection) {
  std::uint64_t h = 14695981039346656037ULL;
  fnv1a(h, "v" + std::to_string(projection.version()));
  for (const auto& t : projection.tables()) fnv1a(h, "t:" + t);
  auto types = projection.event_types();
  std::set<std::string> sorted(types.begin(), types.end());
  for (const auto& t : sorted) fnv1a(h, "e:" + t);
  for (const auto& ddl : projection.schema(Tables(std::string(projection.name()), 0))) {
    fnv1a(h, "s:" + ddl);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace sb::projections
