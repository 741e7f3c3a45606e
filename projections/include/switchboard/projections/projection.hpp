#pragma once
// A projection: a read model kept in PostgreSQL by folding events, in the
// Eventuous style — a name, the event types it reads, its tables, and one
// handler per event type (handled / ignored, or throw for failed).
//
// Generations: a projection's tables live in generations so that a rebuild
// can fill new tables while the old ones keep serving. Handlers and schema
// address tables only through `Tables` (tables("services") →
// "registry_services__g3"); queries read the stable view of the same logical
// name ("registry_services"), which the runner points at the serving
// generation and swaps once a rebuild has caught up.

#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "switchboard/events/envelope.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::projections {

/// Root of the errors this library throws itself (bad names, a schema() that
/// does not create its tables, bookkeeping that does not add up). Database
/// errors come through as sb::pg::Error.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Physical table names of one generation of one projection.
class Tables {
 public:
  Tables(std::string projection, int generation)
      : projection_(std::move(projection)), generation_(generation) {}
  /// "<projection>_<name>__g<generation>": what handlers write to.
  std::string operator()(std::string_view name) const;
  /// "<projection>_<name>": the view queries read.
  std::string view(std::string_view name) const;
  /// A statement naming this generation's tables as `{name}`:
  /// `t.sql("INSERT INTO {orders} (id) VALUES ($1)")`. Only `{name}` with a
  /// table-name shape ([a-z][a-z0-9_]*) is replaced; values stay parameters.
  /// The one audited place projections build SQL text (sql_check_test).
  pg::Sql sql(std::string_view text) const;
  int generation() const noexcept { return generation_; }
  const std::string& projection() const noexcept { return projection_; }

 private:
  std::string projection_;
  int generation_;
};

class Projection {
 public:
  virtual ~Projection() = default;
  /// [a-z][a-z0-9_]* — also the prefix of its tables and views.
  virtual std::string_view name() const = 0;
  /// Bump it when the handlers change meaning (not just the schema): the
  /// runner then rebuilds into a new generation by itself. A change of
  /// tables(), schema() or event_types() is noticed without it.
  virtual int version() const { return 1; }
  /// Event types or AMQP-style patterns ("service.instance.*") it reads;
  /// every other position is stepped over without calling it.
  virtual std::vector<std::string> event_types() const = 0;
  /// Logical names of its tables (each gets a view for queries).
  virtual std::vector<std::string> tables() const = 0;
  /// DDL creating one generation's tables (and their indexes), addressed
  /// through `t`. Run once per generation, in one transaction.
  virtual std::vector<std::string> schema(const Tables& t) const = 0;
  /// Called for each matching event inside the page's transaction (which
  /// also writes the checkpoint). Throw to fail the page.
  ///
  /// Threads: the calls of one page (apply..., flush) come from one thread,
  /// but different partitions, and the serving and the rebuilding generation,
  /// run on different threads at once. Keep per-page batches keyed by the
  /// transaction (or thread_local), never in plain members.
  virtual events::HandleResult apply(pg::Transaction& tx, const Tables& t,
                                     const events::Event& event) = 0;
  /// After the last event of a page, before the checkpoint: flush batched
  /// writes here.
  virtual void flush(pg::Transaction& tx, const Tables& t) {
    (void)tx;
    (void)t;
  }
};

/// A Projection from plain functions keyed by event type (exact types).
class ProjectionBuilder {
 public:
  using Handler =
      std::function<events::HandleResult(pg::Transaction&, const Tables&, const events::Event&)>;
  explicit ProjectionBuilder(std::string name) : name_(std::move(name)) {}
  ProjectionBuilder& table(std::string logical_name) {
    tables_.push_back(std::move(logical_name));
    return *this;
  }
  /// DDL with "{name}" placeholders for tables("name"), e.g.
  /// "CREATE TABLE {orders} (id text PRIMARY KEY, status text NOT NULL)".
  ProjectionBuilder& schema(std::string ddl) {
    ddl_.push_back(std::move(ddl));
    return *this;
  }
  ProjectionBuilder& on(std::string event_type, Handler handler) {
    handlers_[std::move(event_type)] = std::move(handler);
    return *this;
  }
  /// See Projection::version().
  ProjectionBuilder& version(int v) {
    version_ = v;
    return *this;
  }
  std::shared_ptr<Projection> build() const;

 private:
  std::string name_;
  std::vector<std::string> tables_;
  std::vector<std::string> ddl_;
  std::map<std::string, Handler> handlers_;
  int version_ = 1;
};

/// Replaces "{name}" in `ddl` with t("name") for each of `tables`.
std::string expand(std::string_view ddl, const Tables& t, const std::vector<std::string>& tables);

/// Projection and logical table names: [a-z][a-z0-9_]*, no "__" (it
/// separates the generation), and short enough that
/// "<projection>_<table>__g999999" fits PostgreSQL's 63-byte identifiers.
bool is_valid_projection_name(std::string_view name);
bool is_valid_table_name(std::string_view projection, std::string_view table);
/// Throws Error naming what is wrong with the projection's name or tables.
void validate(const Projection& projection);

/// A stable hash (hex) of what fixes a generation's content: version(),
/// tables(), event_types() and schema() (rendered for generation 0). A
/// serving generation built under another fingerprint is rebuilt.
std::string fingerprint(const Projection& projection);

}  // namespace sb::projections
