#pragma once
// PostgreSQL access: parameterised SQL only, our own result types, a bounded
// connection pool and a transaction runner that retries only what is safe.
//
// Every call blocks (libpqxx underneath): use these from dedicated threads,
// never from an event loop. libpqxx stays private to src/pg*.cpp.
//
// Connections never reconnect silently: a lost connection surfaces as a
// ConnectionError, because a silent reconnect would drop session state
// (advisory locks, LISTEN, SET) behind the caller's back. The pool replaces
// a broken connection with a new one on the next acquire instead.

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace sb::pg {

// ---------------------------------------------------------------------------
// Errors: one root, and properties the caller can act on.

/// Root of every error this layer throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, std::string sqlstate = {})
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  /// Five-character SQLSTATE when the server gave one, else empty.
  const std::string& sqlstate() const noexcept { return sqlstate_; }
  /// Whether running the whole transaction again is safe and may succeed.
  virtual bool is_retryable() const noexcept { return false; }

 private:
  std::string sqlstate_;
};

/// The connection could not be opened or was lost. Retrying the whole
/// transaction on a new connection is safe when this was thrown before
/// commit (a loss during commit is an InDoubtError instead). After an
/// autocommit Connection::exec, the outcome of that one statement is unknown.
class ConnectionError : public Error {
 public:
  using Error::Error;
  bool is_retryable() const noexcept override { return true; }
};

/// The connection was lost while committing: the transaction may or may not
/// have been applied. Never retried; find out by re-reading (e.g. by ids).
class InDoubtError : public Error {
 public:
  using Error::Error;
};

/// No pooled connection became free before the acquire deadline.
class PoolTimeout : public Error {
 public:
  using Error::Error;
};

/// Misuse of this API: NULL read as a value, bad conversion, unknown column,
/// wrong row count.
class UsageError : public Error {
 public:
  using Error::Error;
};

/// A migration set is invalid or conflicts with what the database recorded.
class MigrationError : public Error {
 public:
  using Error::Error;
};

/// The server rejected a statement.
class QueryError : public Error {
 public:
  QueryError(const std::string& message, std::string sqlstate, std::string query)
      : Error(message, std::move(sqlstate)), query_(std::move(query)) {}
  const std::string& query() const noexcept { return query_; }

 private:
  std::string query_;
};

/// 40001: the transaction conflicted with a concurrent one; run it again.
class SerializationFailure : public QueryError {
 public:
  using QueryError::QueryError;
  bool is_retryable() const noexcept override { return true; }
};

/// 40P01: the transaction was chosen as a deadlock victim; run it again.
class DeadlockDetected : public QueryError {
 public:
  using QueryError::QueryError;
  bool is_retryable() const noexcept override { return true; }
};

/// 23505: a unique constraint rejected the row (e.g. a duplicate id).
class UniqueViolation : public QueryError {
 public:
  using QueryError::QueryError;
};

namespace sqlstate {
inline constexpr std::string_view kSerializationFailure = "40001";
inline constexpr std::string_view kDeadlockDetected = "40P01";
inline constexpr std::string_view kUniqueViolation = "23505";
inline constexpr std::string_view kQueryCanceled = "57014";  // statement_timeout
inline constexpr std::string_view kLockNotAvailable = "55P03";
}  // namespace sqlstate

/// Throws the Error subclass that matches a server error: class 08 and
/// 57P01..57P03 (the server went away) are ConnectionError, 40001, 40P01 and
/// 23505 have their own types, anything else is a QueryError.
[[noreturn]] void throw_server_error(const std::string& message, const std::string& sqlstate,
                                     const std::string& query);

// ---------------------------------------------------------------------------
// Parameters: values are sent as text (or NULL); the server parses them into
// the type of the placeholder ($1, $2, ...), so SQL never embeds values.

class Param {
 public:
  Param(std::nullopt_t) noexcept {}  // SQL NULL
  Param(std::string value) : text_(std::move(value)) {}
  Param(std::string_view value) : text_(std::string(value)) {}
  Param(const char* value) {  // a null pointer is SQL NULL
    if (value != nullptr) text_ = std::string(value);
  }
  Param(bool value) : text_(value ? "true" : "false") {}
  template <std::integral I>
  requires(!std::same_as<I, bool> && !std::same_as<I, char>) Param(I value)
      : text_(std::to_string(value)) {}
  Param(float value);   // shortest text that round-trips; NaN/±Infinity as PG spells them
  Param(double value);  // same
  template <class T>
  Param(const std::optional<T>& value) {
    if (value) *this = Param(*value);
  }

  /// Raw bytes for a bytea placeholder (sent in PostgreSQL's hex format).
  static Param bytes(std::string_view raw);

  bool is_null() const noexcept { return !text_.has_value(); }
  const std::optional<std::string>& text() const noexcept { return text_; }

 private:
  std::optional<std::string> text_;
};

/// The text of one SQL statement. Values never go into it: they are
/// parameters ($1, $2, ...). An Sql converts implicitly only from text the
/// compiler can see (a string literal or a constexpr character array: the
/// constructor is consteval), so `exec("... WHERE id = " + id)` does not
/// compile. Text assembled at run time — from constant fragments and
/// identifiers only (table names with a configured prefix, quoted with
/// quote_identifier) — must say so with Sql::trusted; every such call is
/// listed, with its reason, in tests/unit/shared/sql_check_test.cpp, which
/// fails on any other.
class Sql {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): literals are the normal case
  consteval Sql(const char* text) : text_(text) {}
  /// Audited run-time text (see above). Keeps its own copy.
  static Sql trusted(std::string text) {
    Sql s;
    s.owned_ = std::make_shared<const std::string>(std::move(text));
    s.text_ = *s.owned_;
    return s;
  }
  std::string_view text() const noexcept { return text_; }

 private:
  Sql() = default;
  std::string_view text_;
  std::shared_ptr<const std::string> owned_;
};

/// `name` as a double-quoted SQL identifier (embedded quotes doubled), for
/// the Sql::trusted statements that name configured tables.
std::string quote_identifier(std::string_view name);

/// Positional parameters: `tx.exec("... $1, $2", {id, name})`, or built up
/// with add() when the count is known only at run time.
class Params {
 public:
  Params() = default;
  Params(std::initializer_list<Param> values) : values_(values) {}
  Params& add(Param value) {
    values_.push_back(std::move(value));
    return *this;
  }
  std::size_t size() const noexcept { return values_.size(); }
  bool empty() const noexcept { return values_.empty(); }
  const Param& operator[](std::size_t i) const { return values_[i]; }
  auto begin() const noexcept { return values_.begin(); }
  auto end() const noexcept { return values_.end(); }

 private:
  std::vector<Param> values_;
};

// ---------------------------------------------------------------------------
// Results. Rows and fields share ownership of the result data, so they stay
// valid after the Result, the transaction and the connection are gone.

class Result;
struct ResultData;

class Field {
 public:
  bool is_null() const;
  /// The value as the server sent it in text format. Throws UsageError on NULL.
  std::string_view text() const;
  std::string_view name() const;

  /// T: std::string, std::string_view (valid while the result lives), bool,
  /// an integer type (range-checked), float or double. NULL or text that does
  /// not parse as T throws UsageError.
  template <class T>
  T get() const {
    if constexpr (std::is_same_v<T, std::string>) {
      return std::string(text());
    } else if constexpr (std::is_same_v<T, std::string_view>) {
      return text();
    } else if constexpr (std::is_same_v<T, bool>) {
      return as_bool();
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      const std::int64_t v = as_int64();
      if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max()) out_of_range();
      return static_cast<T>(v);
    } else if constexpr (std::is_integral_v<T>) {
      const std::uint64_t v = as_uint64();
      if (v > std::numeric_limits<T>::max()) out_of_range();
      return static_cast<T>(v);
    } else if constexpr (std::is_same_v<T, double>) {
      return as_double();
    } else if constexpr (std::is_same_v<T, float>) {
      return static_cast<float>(as_double());
    } else {
      static_assert(sizeof(T) == 0, "unsupported type for pg::Field::get");
    }
  }
  /// The raw bytes of a bytea column (decodes the server's hex format).
  std::string bytes() const;
  /// Like get<T>(), but NULL is std::nullopt.
  template <class T>
  std::optional<T> get_optional() const {
    if (is_null()) return std::nullopt;
    return get<T>();
  }

 private:
  friend class Row;
  Field(std::shared_ptr<const ResultData> data, std::size_t row, std::size_t column)
      : data_(std::move(data)), row_(row), column_(column) {}
  bool as_bool() const;
  std::int64_t as_int64() const;
  std::uint64_t as_uint64() const;
  double as_double() const;
  [[noreturn]] void out_of_range() const;

  std::shared_ptr<const ResultData> data_;
  std::size_t row_;
  std::size_t column_;
};

class Row {
 public:
  std::size_t size() const noexcept;
  std::size_t index() const noexcept { return row_; }
  /// Throws UsageError when the column does not exist.
  Field operator[](std::size_t column) const;
  Field operator[](std::string_view column_name) const;

 private:
  friend class Result;
  Row(std::shared_ptr<const ResultData> data, std::size_t row)
      : data_(std::move(data)), row_(row) {}

  std::shared_ptr<const ResultData> data_;
  std::size_t row_;
};

class Result {
 public:
  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = Row;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Row;

    Iterator() = default;
    Row operator*() const { return (*result_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator old = *this;
      ++i_;
      return old;
    }
    bool operator==(const Iterator& o) const noexcept { return i_ == o.i_; }

   private:
    friend class Result;
    Iterator(const Result* r, std::size_t i) : result_(r), i_(i) {}
    const Result* result_ = nullptr;
    std::size_t i_ = 0;
  };

  Result() = default;
  explicit Result(std::shared_ptr<const ResultData> data) : data_(std::move(data)) {}

  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  std::size_t columns() const noexcept;
  std::string column_name(std::size_t column) const;
  /// Rows inserted, updated or deleted by the statement.
  std::uint64_t affected_rows() const noexcept;

  /// Throws UsageError when out of range.
  Row operator[](std::size_t row) const;
  /// The single row; UsageError when there are zero or several.
  Row one() const;
  /// The row if there is exactly one, nullopt if none, UsageError if several.
  std::optional<Row> optional_one() const;

  Iterator begin() const noexcept { return Iterator(this, 0); }
  Iterator end() const noexcept { return Iterator(this, size()); }

 private:
  std::shared_ptr<const ResultData> data_;
};

// ---------------------------------------------------------------------------
// Connections and transactions.

struct ConnectOptions {
  /// postgresql://user:password@host:port/db or a libpq "key=value" string.
  std::string url;
  std::chrono::milliseconds connect_timeout{5000};
  /// Server-side limit per statement; 0 keeps the server's default.
  std::chrono::milliseconds statement_timeout{0};
  std::string application_name = "switchboard";
  /// SQL run once on every new connection, after the settings above
  /// (e.g. "SET search_path TO store, public").
  std::vector<std::string> session_setup;
};

/// The libpq connection string for these options: the URL with
/// connect_timeout added (libpq takes whole seconds; rounded up).
std::string build_conninfo(const ConnectOptions& options);

/// The URL with any password replaced by "***", for logs and errors.
std::string redact_url(std::string_view url);

enum class Isolation { read_committed, repeatable_read, serializable };

struct TransactionOptions {
  Isolation isolation = Isolation::read_committed;
  bool read_only = false;
};

struct Notification {
  std::string channel;
  std::string payload;
  int backend_pid = 0;
};

class Transaction;

/// One server session. Not thread-safe: use it from one thread at a time.
/// Never reconnects: once lost, every call throws ConnectionError, so session
/// state the caller relies on (advisory locks, LISTEN) cannot vanish unseen.
class Connection {
 public:
  /// Connects now. Throws ConnectionError (unreachable, refused, bad
  /// credentials) or QueryError (a session_setup statement failed).
  explicit Connection(const ConnectOptions& options);
  ~Connection();
  Connection(Connection&&) noexcept;
  Connection& operator=(Connection&&) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// One statement outside any explicit transaction (autocommit). Without
  /// parameters the text may hold several statements (used for migrations).
  Result exec(const Sql& sql, const Params& params = {});

  /// Starts a transaction (BEGIN is sent now). One at a time per connection;
  /// the Transaction must not outlive this Connection.
  Transaction begin(const TransactionOptions& options = {});

  /// False once the connection is known to be lost (or was closed).
  bool is_open() const noexcept;
  /// Cheap liveness check for an idle connection, without a round trip:
  /// notices a server that closed the session (terminated backend, restart).
  /// Returns false and marks the connection lost when it did.
  bool check_alive() noexcept;
  /// A round trip (SELECT 1); throws ConnectionError if the session is gone.
  void ping();
  int backend_pid() const noexcept;

  /// Session-level advisory locks: held until unlocked or the session ends.
  bool try_advisory_lock(std::int64_t key);
  bool advisory_unlock(std::int64_t key);

  /// LISTEN on a channel; notifications are collected by
  /// wait_for_notifications.
  void listen(const std::string& channel);
  /// Returns the notifications received so far, waiting up to `timeout` for
  /// the first one when there are none yet (empty vector: none arrived).
  std::vector<Notification> wait_for_notifications(std::chrono::milliseconds timeout);

  void close() noexcept;

  struct Impl;

 private:
  friend class Transaction;
  std::unique_ptr<Impl> impl_;
};

/// COPY ... FROM STDIN (text format) inside a transaction: the bulk way to
/// insert many rows (a third fewer server cycles per row than a multi-row
/// INSERT, and no parameter limit). Values are escaped as they are added and
/// sent in chunks while the caller keeps adding rows, so the server parses
/// while the client formats. Get one from Transaction::copy_in.
///
/// Constraint violations (e.g. UniqueViolation) and a lost connection are
/// reported by add calls or by finish(), with the same Error types as exec.
/// While a copy is open, its transaction runs nothing else. A copy destroyed
/// without finish() (an exception while adding rows) ends the COPY with only
/// some rows, so its transaction then refuses to commit (UsageError, and it
/// is aborted). It must not outlive its Transaction.
class CopyIn {
 public:
  ~CopyIn();
  CopyIn(CopyIn&&) noexcept;
  CopyIn& operator=(CopyIn&&) noexcept;
  CopyIn(const CopyIn&) = delete;
  CopyIn& operator=(const CopyIn&) = delete;

  /// The next column of the current row, as text the server parses into the
  /// column's type (like a Param).
  CopyIn& text(std::string_view value);
  CopyIn& integer(std::int64_t value);
  /// SQL NULL.
  CopyIn& null();
  template <class T>
  CopyIn& optional_text(const std::optional<T>& value) {
    return value ? text(*value) : null();
  }
  /// Ends the current row; throws UsageError when it has the wrong number of
  /// columns.
  CopyIn& end_row();

  /// Sends what is left and ends the COPY; returns the rows written.
  std::uint64_t finish();

  struct Impl;

 private:
  friend class Transaction;
  explicit CopyIn(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// Aborted on destruction unless committed.
class Transaction {
 public:
  ~Transaction();
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) noexcept;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Result exec(const Sql& sql, const Params& params = {});
  /// Starts COPY table (columns...) FROM STDIN. `table` and `columns` are
  /// identifiers from the caller's code (letters, digits, '_' and '.'; never
  /// input): UsageError otherwise.
  CopyIn copy_in(std::string_view table, const std::vector<std::string>& columns);
  /// Throws InDoubtError when the connection is lost during COMMIT, and a
  /// QueryError (e.g. SerializationFailure) when the server refused it.
  void commit();
  void abort() noexcept;

  struct Impl;

 private:
  friend class Connection;
  explicit Transaction(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------
// Pool.

struct PoolOptions {
  ConnectOptions connection;
  std::size_t max_size = 8;
  /// How long acquire() waits for a free connection before PoolTimeout.
  std::chrono::milliseconds acquire_timeout{5000};
};

/// A bounded set of connections, opened lazily up to max_size. Thread-safe.
/// A connection found lost (by an error or by check_alive on checkout) is
/// dropped and replaced by a new one on a later acquire.
class Pool {
 public:
  class Lease;
  struct Stats {
    std::size_t open = 0;  // connections that exist (idle + leased)
    std::size_t idle = 0;
    std::size_t leased = 0;
    std::uint64_t discarded = 0;  // dropped because they were lost
  };

  explicit Pool(PoolOptions options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /// Waits up to options().acquire_timeout. Throws PoolTimeout when no
  /// connection became free, ConnectionError when a new one failed to open.
  Lease acquire();
  Lease acquire(std::chrono::milliseconds timeout);

  Stats stats() const;
  const PoolOptions& options() const noexcept;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

/// Exclusive use of one pooled connection; returns it on destruction (or
/// drops it when it was lost). May outlive the Pool.
class Pool::Lease {
 public:
  ~Lease();
  Lease(Lease&&) noexcept;
  Lease& operator=(Lease&&) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  Connection& operator*() const noexcept { return *connection_; }
  Connection* operator->() const noexcept { return connection_.get(); }

 private:
  friend class Pool;
  Lease(std::shared_ptr<State> state, std::unique_ptr<Connection> connection);
  void release() noexcept;

  std::shared_ptr<State> state_;
  std::unique_ptr<Connection> connection_;
};

// ---------------------------------------------------------------------------
// Transactions with retry.

struct RetryPolicy {
  /// Total attempts including the first; 1 disables retries.
  int max_attempts = 5;
  /// Backoff before retry n is random in [0, min(max, initial * 2^(n-1))]
  /// (full jitter) so conflicting writers do not collide again in lockstep.
  std::chrono::milliseconds initial_backoff{5};
  std::chrono::milliseconds max_backoff{200};
};

namespace detail {
void run_transaction(Pool& pool, const std::function<void(Transaction&)>& body,
                     const RetryPolicy& retry, const TransactionOptions& options);
}  // namespace detail

/// Runs fn(Transaction&) in a transaction on a pooled connection and commits.
/// Retries, on a fresh transaction, only what is safe: a lost connection
/// before commit, 40001 and 40P01 (see Error::is_retryable). An InDoubtError
/// is never retried. Other exceptions (ours or fn's) abort and propagate.
/// fn may therefore run several times: keep effects outside the database
/// (publishing, caches) until with_transaction returns.
template <class Fn>
auto with_transaction(Pool& pool, Fn&& fn, const RetryPolicy& retry = {},
                      const TransactionOptions& options = {})
    -> std::invoke_result_t<Fn&, Transaction&> {
  using R = std::invoke_result_t<Fn&, Transaction&>;
  if constexpr (std::is_void_v<R>) {
    detail::run_transaction(
        pool, [&fn](Transaction& tx) { fn(tx); }, retry, options);
  } else {
    std::optional<R> out;
    detail::run_transaction(
        pool,
        [&fn, &out](Transaction& tx) {
          out.reset();
          out.emplace(fn(tx));
        },
        retry, options);
    return std::move(*out);
  }
}

}  // namespace sb::pg
