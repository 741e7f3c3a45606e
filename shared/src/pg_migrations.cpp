// Versioned migrations under an advisory lock.
#include "switchboard/shared/pg_migrations.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "switchboard/shared/log.hpp"

namespace sb::pg {
namespace {

// One lock for every component: creating schema_migrations itself must not
// race either, and migrations are rare enough that serialising them is free.
constexpr std::int64_t kMigrationLockKey = 0x5342'4D49'4752'4154;  // "SBMIGRAT"

bool valid_component(std::string_view c) {
  if (c.empty()) return false;
  return std::all_of(c.begin(), c.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
  });
}

bool valid_name(std::string_view n) {
  if (n.empty()) return false;
  return std::all_of(n.begin(), n.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
  });
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw MigrationError("cannot read migration " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Applied {
  std::string name;
  std::string checksum;
};

}  // namespace

std::string migration_checksum(std::string_view sql) {
  std::string normalised;
  normalised.reserve(sql.size());
  for (std::size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] == '\r' && i + 1 < sql.size() && sql[i + 1] == '\n') continue;
    normalised += sql[i];
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(normalised.data(), normalised.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    throw MigrationError("cannot compute a SHA-256 checksum");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0xF];
  }
  return out;
}

void validate(MigrationSet& set) {
  if (!valid_component(set.component)) {
    throw MigrationError("migration component \"" + set.component +
                         "\" must be non-empty [a-z0-9_]");
  }
  std::sort(set.migrations.begin(), set.migrations.end(),
            [](const Migration& a, const Migration& b) { return a.version < b.version; });
  for (std::size_t i = 0; i < set.migrations.size(); ++i) {
    const auto& m = set.migrations[i];
    const std::string where = set.component + " migration " + std::to_string(m.version);
    if (m.version <= 0) throw MigrationError(where + ": version must be positive");
    if (!valid_name(m.name)) throw MigrationError(where + ": name \"" + m.name + "\" is invalid");
    if (i > 0 && set.migrations[i - 1].version == m.version) {
      throw MigrationError(where + ": version used twice (" + set.migrations[i - 1].name + ", " +
                           m.name + ")");
    }
  }
}

MigrationSet load_migrations(std::string component, const std::filesystem::path& directory) {
  static const std::regex kPattern(R"(^([0-9]+)_([A-Za-z0-9_-]+)\.sql$)");
  std::error_code ec;
  std::filesystem::directory_iterator it(directory, ec);
  if (ec) {
    throw MigrationError("cannot list migrations in " + directory.string() + ": " + ec.message());
  }
  MigrationSet set{std::move(component), {}};
  for (const auto& entry : it) {
    if (!entry.is_regular_file()) continue;
    const std::string file = entry.path().filename().string();
    if (entry.path().extension() != ".sql") continue;
    std::smatch m;
    if (!std::regex_match(file, m, kPattern)) {
      throw MigrationError("migration file " + file + " does not match NNNN_name.sql");
    }
    Migration mig;
    try {
      mig.version = std::stoll(m[1].str());
    } catch (const std::exception&) {
      throw MigrationError("migration file " + file + ": version out of range");
    }
    mig.name = m[2].str();
    mig.sql = read_file(entry.path());
    set.migrations.push_back(std::move(mig));
  }
  validate(set);
  return set;
}

MigrateReport migrate(const ConnectOptions& connection, MigrationSet set,
                      const MigrateOptions& options) {
  validate(set);
  Connection conn(connection);

  const std::string previous_lock_timeout =
      conn.exec("SELECT current_setting('lock_timeout')").one()[0].get<std::string>();
  conn.exec("SELECT set_config('lock_timeout', $1, false)",
            {std::to_string(options.lock_timeout.count())});
  try {
    conn.exec("SELECT pg_advisory_lock($1)", {kMigrationLockKey});
  } catch (const QueryError& e) {
    if (e.sqlstate() != sqlstate::kLockNotAvailable) throw;
    throw MigrationError("migrations for " + set.component +
                         ": another instance held the lock for " +
                         std::to_string(options.lock_timeout.count()) + " ms");
  }
  conn.exec("SELECT set_config('lock_timeout', $1, false)", {previous_lock_timeout});

  conn.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " component text NOT NULL,"
      " version bigint NOT NULL,"
      " name text NOT NULL,"
      " checksum text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now(),"
      " PRIMARY KEY (component, version))");

  std::map<std::int64_t, Applied> applied;
  for (const auto& row :
       conn.exec("SELECT version, name, checksum FROM schema_migrations WHERE component = $1",
                 {set.component})) {
    applied.emplace(row[0].get<std::int64_t>(),
                    Applied{row[1].get<std::string>(), row[2].get<std::string>()});
  }
  const std::int64_t highest_applied = applied.empty() ? 0 : applied.rbegin()->first;

  // Check everything before changing anything.
  std::vector<const Migration*> pending;
  std::set<std::int64_t> known;
  MigrateReport report;
  for (const auto& m : set.migrations) {
    known.insert(m.version);
    const std::string where =
        set.component + " migration " + std::to_string(m.version) + "_" + m.name;
    auto a = applied.find(m.version);
    if (a != applied.end()) {
      if (a->second.checksum != migration_checksum(m.sql)) {
        throw MigrationError(where + " was changed after it was applied (checksum " +
                             a->second.checksum + " recorded); add a new migration instead");
      }
      ++report.already_applied;
      continue;
    }
    if (m.version < highest_applied) {
      throw MigrationError(where + " is new but migration " + std::to_string(highest_applied) +
                           " is already applied; it would run out of order");
    }
    pending.push_back(&m);
  }
  for (const auto& [version, a] : applied) {
    if (known.count(version) == 0) {
      sb::log::warn("applied migration unknown to this build (a newer release ran?)",
                    {{"component", set.component}, {"version", version}, {"name", a.name}});
    }
  }

  for (const Migration* m : pending) {
    auto tx = conn.begin();
    tx.exec(Sql::trusted(m->sql));
    tx.exec(
        "INSERT INTO schema_migrations (component, version, name, checksum) "
        "VALUES ($1, $2, $3, $4)",
        {set.component, m->version, m->name, migration_checksum(m->sql)});
    tx.commit();
    sb::log::info("applied migration",
                  {{"component", set.component}, {"version", m->version}, {"name", m->name}});
    report.applied.push_back(m->version);
  }

  conn.advisory_unlock(kMigrationLockKey);
  return report;
}

}  // namespace sb::pg
