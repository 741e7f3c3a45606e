// Connections, transactions, parameters and results over libpqxx 6.4.
#include "switchboard/shared/pg.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include <charconv>
#include <cmath>
#include <deque>
#include <system_error>

#include <pqxx/pqxx>
#include <pqxx/tablewriter>

namespace sb::pg {

struct ResultData {
  pqxx::result result;
};

namespace {

// Server errors that mean "the session is gone", not "the statement is wrong".
bool is_connection_sqlstate(std::string_view state) {
  return state.starts_with("08") || state == "57P01" || state == "57P02" || state == "57P03" ||
         state == "53300";
}

template <class Float>
std::string format_float(Float value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) throw UsageError("cannot format a floating-point parameter");
  return std::string(buf, end);
}

std::string seconds_rounded_up(std::chrono::milliseconds ms) {
  const auto count = ms.count();
  if (count <= 0) return "0";
  return std::to_string((count + 999) / 1000);
}

// What a connection-level failure means depends on whether we know the
// session is gone; the flag lets the pool drop it.
struct ErrorContext {
  bool* lost = nullptr;
  pqxx::connection* conn = nullptr;
};

[[noreturn]] void rethrow_translated(ErrorContext ctx) {
  // Closing at once frees the socket, and keeps libpqxx from sending ROLLBACK
  // into a dead session later (each such attempt leaks a PGresult in 6.4).
  auto mark_lost = [&] {
    if (ctx.lost != nullptr) *ctx.lost = true;
    if (ctx.conn != nullptr) ctx.conn->disconnect();
  };
  try {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    mark_lost();
    throw InDoubtError(e.what());
  } catch (const pqxx::broken_connection& e) {
    mark_lost();
    throw ConnectionError(e.what());
  } catch (const pqxx::sql_error& e) {
    const bool gone = ctx.conn != nullptr && !ctx.conn->is_open();
    if (gone || is_connection_sqlstate(e.sqlstate())) {
      mark_lost();
      throw ConnectionError(e.what(), e.sqlstate());
    }
    throw_server_error(e.what(), e.sqlstate(), e.query());
  } catch (const pqxx::serialization_failure& e) {
    throw SerializationFailure(e.what(), std::string(sqlstate::kSerializationFailure), "");
  } catch (const pqxx::deadlock_detected& e) {
    throw DeadlockDetected(e.what(), std::string(sqlstate::kDeadlockDetected), "");
  } catch (const pqxx::statement_completion_unknown& e) {
    throw QueryError(e.what(), "40003", "");
  } catch (const pqxx::transaction_rollback& e) {
    throw QueryError(e.what(), "40000", "");
  } catch (const pqxx::usage_error& e) {
    throw UsageError(e.what());
  } catch (const pqxx::conversion_error& e) {
    throw UsageError(e.what());
  } catch (const pqxx::range_error& e) {
    throw UsageError(e.what());
  } catch (const pqxx::argument_error& e) {
    throw UsageError(e.what());
  } catch (const pqxx::failure& e) {
    if (ctx.conn != nullptr && !ctx.conn->is_open()) {
      mark_lost();
      throw ConnectionError(e.what());
    }
    throw Error(e.what());
  }
}

Result run(pqxx::transaction_base& tx, std::string_view sql, const Params& params) {
  if (params.empty()) {
    return Result(std::make_shared<const ResultData>(ResultData{tx.exec(std::string(sql))}));
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.is_null() ? nullptr : p.text()->c_str());
  auto r = tx.exec_params(std::string(sql), pqxx::prepare::make_dynamic_params(values));
  return Result(std::make_shared<const ResultData>(ResultData{std::move(r)}));
}

class Receiver final : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, std::deque<Notification>& sink)
      : pqxx::notification_receiver(c, channel), sink_(sink) {}
  void operator()(const std::string& payload, int backend_pid) override {
    sink_.push_back(Notification{channel(), payload, backend_pid});
  }

 private:
  std::deque<Notification>& sink_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Errors

void throw_server_error(const std::string& message, const std::string& state,
                        const std::string& query) {
  if (is_connection_sqlstate(state)) throw ConnectionError(message, state);
  if (state == sqlstate::kSerializationFailure) throw SerializationFailure(message, state, query);
  if (state == sqlstate::kDeadlockDetected) throw DeadlockDetected(message, state, query);
  if (state == sqlstate::kUniqueViolation) throw UniqueViolation(message, state, query);
  throw QueryError(message, state, query);
}

// ---------------------------------------------------------------------------
// Params

Param::Param(float value) : text_(format_float(value)) {}
Param::Param(double value) : text_(format_float(value)) {}

Param Param::bytes(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 + raw.size() * 2);
  out += "\\x";
  for (char ch : raw) {
    const auto b = static_cast<unsigned char>(ch);
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  return Param(std::move(out));
}

// ---------------------------------------------------------------------------
// Results

bool Field::is_null() const {
  return data_
      ->result[static_cast<pqxx::result::size_type>(row_)]
              [static_cast<pqxx::row::size_type>(column_)]
      .is_null();
}

std::string_view Field::text() const {
  auto f = data_->result[static_cast<pqxx::result::size_type>(row_)]
                        [static_cast<pqxx::row::size_type>(column_)];
  if (f.is_null()) {
    throw UsageError("column \"" + std::string(name()) + "\" is NULL; use get_optional");
  }
  return std::string_view(f.c_str(), f.size());
}

std::string Field::bytes() const {
  const auto t = text();
  if (!t.starts_with("\\x") || t.size() % 2 != 0) {
    throw UsageError("column \"" + std::string(name()) + "\": not bytea in hex format");
  }
  auto nibble = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw UsageError("column \"" + std::string(name()) + "\": bad hex digit in bytea");
  };
  std::string out;
  out.reserve((t.size() - 2) / 2);
  for (std::size_t i = 2; i < t.size(); i += 2) {
    out += static_cast<char>((nibble(t[i]) << 4) | nibble(t[i + 1]));
  }
  return out;
}

std::string_view Field::name() const {
  const char* n = data_->result.column_name(static_cast<pqxx::row::size_type>(column_));
  return n == nullptr ? std::string_view() : std::string_view(n);
}

bool Field::as_bool() const {
  const auto t = text();
  if (t == "t" || t == "true") return true;
  if (t == "f" || t == "false") return false;
  throw UsageError("column \"" + std::string(name()) + "\": not a boolean: " + std::string(t));
}

namespace {
template <class T>
T parse_number(std::string_view t, std::string_view column, const char* what) {
  T v{};
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size()) {
    throw UsageError("column \"" + std::string(column) + "\": not " + what + ": " + std::string(t));
  }
  return v;
}
}  // namespace

std::int64_t Field::as_int64() const {
  return parse_number<std::int64_t>(text(), name(), "an integer");
}
std::uint64_t Field::as_uint64() const {
  return parse_number<std::uint64_t>(text(), name(), "an unsigned integer");
}
double Field::as_double() const {
  const auto t = text();
  if (t == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (t == "Infinity") return std::numeric_limits<double>::infinity();
  if (t == "-Infinity") return -std::numeric_limits<double>::infinity();
  return parse_number<double>(t, name(), "a number");
}
void Field::out_of_range() const {
  throw UsageError("column \"" + std::string(name()) +
                   "\": value out of range: " + std::string(text()));
}

std::size_t Row::size() const noexcept {
  return static_cast<std::size_t>(data_->result.columns());
}

Field Row::operator[](std::size_t column) const {
  if (column >= size()) {
    throw UsageError("column index " + std::to_string(column) + " out of range (" +
                     std::to_string(size()) + " columns)");
  }
  return Field(data_, row_, column);
}

Field Row::operator[](std::string_view column_name) const {
  const auto n = data_->result.columns();
  for (pqxx::row::size_type i = 0; i < n; ++i) {
    const char* name = data_->result.column_name(i);
    if (name != nullptr && column_name == name) return Field(data_, row_, i);
  }
  throw UsageError("no column named \"" + std::string(column_name) + "\"");
}

std::size_t Result::size() const noexcept {
  return data_ ? static_cast<std::size_t>(data_->result.size()) : 0;
}
std::size_t Result::columns() const noexcept {
  return data_ ? static_cast<std::size_t>(data_->result.columns()) : 0;
}
std::string Result::column_name(std::size_t column) const {
  if (column >= columns()) throw UsageError("column index out of range");
  return data_->result.column_name(static_cast<pqxx::row::size_type>(column));
}
std::uint64_t Result::affected_rows() const noexcept {
  return data_ ? static_cast<std::uint64_t>(data_->result.affected_rows()) : 0;
}
Row Result::operator[](std::size_t row) const {
  if (row >= size()) {
    throw UsageError("row index " + std::to_string(row) + " out of range (" +
                     std::to_string(size()) + " rows)");
  }
  return Row(data_, row);
}
Row Result::one() const {
  if (size() != 1) throw UsageError("expected exactly one row, got " + std::to_string(size()));
  return Row(data_, 0);
}
std::optional<Row> Result::optional_one() const {
  if (size() > 1) throw UsageError("expected at most one row, got " + std::to_string(size()));
  if (size() == 0) return std::nullopt;
  return Row(data_, 0);
}

// ---------------------------------------------------------------------------
// Connection strings

std::string build_conninfo(const ConnectOptions& options) {
  std::string info = options.url;
  const std::string timeout = seconds_rounded_up(options.connect_timeout);
  const bool is_url = info.starts_with("postgresql://") || info.starts_with("postgres://");
  if (is_url) {
    info += info.find('?') == std::string::npos ? '?' : '&';
    info += "connect_timeout=" + timeout;
  } else {
    if (!info.empty()) info += ' ';
    info += "connect_timeout=" + timeout;
  }
  return info;
}

std::string redact_url(std::string_view url) {
  const auto scheme = url.find("://");
  if (scheme != std::string_view::npos) {
    const auto start = scheme + 3;
    const auto at = url.find('@', start);
    const auto slash = url.find('/', start);
    if (at != std::string_view::npos && (slash == std::string_view::npos || at < slash)) {
      const auto colon = url.find(':', start);
      if (colon != std::string_view::npos && colon < at) {
        return std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(at));
      }
    }
    return std::string(url);
  }
  // key=value form: hide the value of password=.
  std::string out(url);
  const auto p = out.find("password=");
  if (p != std::string::npos) {
    const auto v = p + 9;
    const auto e = out.find(' ', v);
    out.replace(v, (e == std::string::npos ? out.size() : e) - v, "***");
  }
  return out;
}

// ---------------------------------------------------------------------------
// Connection

struct Connection::Impl {
  std::unique_ptr<pqxx::connection> conn;
  bool lost = false;
  bool in_transaction = false;
  std::deque<Notification> notifications;
  std::vector<std::unique_ptr<Receiver>> receivers;

  ErrorContext context() { return ErrorContext{&lost, conn.get()}; }

  void require_usable() const {
    if (!conn || lost) throw ConnectionError("connection is closed or was lost");
  }
};

Connection::Connection(const ConnectOptions& options) : impl_(std::make_unique<Impl>()) {
  try {
    impl_->conn = std::make_unique<pqxx::connection>(build_conninfo(options));
  } catch (const pqxx::broken_connection& e) {
    throw ConnectionError("cannot connect to " + redact_url(options.url) + ": " + e.what());
  } catch (...) {
    rethrow_translated(ErrorContext{});
  }
  // Reactivation would reconnect silently and lose session state; we want the
  // loss to be an error the caller sees. Deprecated in 6.4, but the only way.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  impl_->conn->inhibit_reactivation(true);
#pragma GCC diagnostic pop

  Params settings{options.application_name, std::to_string(options.statement_timeout.count())};
  // Notices (e.g. "already exists, skipping") would go to stderr unstructured.
  exec(
      "SELECT set_config('application_name', $1, false), "
      "set_config('statement_timeout', $2, false), "
      "set_config('client_min_messages', 'warning', false)",
      settings);
  for (const auto& sql : options.session_setup) exec(Sql::trusted(sql));
}

Connection::~Connection() = default;
Connection::Connection(Connection&&) noexcept = default;
Connection& Connection::operator=(Connection&&) noexcept = default;

Result Connection::exec(const Sql& statement, const Params& params) {
  const auto sql = statement.text();
  impl_->require_usable();
  try {
    pqxx::nontransaction tx(*impl_->conn);
    auto r = run(tx, sql, params);
    tx.commit();
    return r;
  } catch (...) {
    rethrow_translated(impl_->context());
  }
}

bool Connection::is_open() const noexcept {
  return impl_ && impl_->conn && !impl_->lost && impl_->conn->is_open();
}

bool Connection::check_alive() noexcept {
  if (!is_open()) return false;
  if (impl_->in_transaction) return true;
  pollfd pfd{};
  pfd.fd = impl_->conn->sock();
  pfd.events = POLLIN;
  if (pfd.fd < 0) {
    impl_->lost = true;
    return false;
  }
  const int n = ::poll(&pfd, 1, 0);
  if (n == 0) return true;  // nothing pending: an idle session says nothing
  // Pending input on an idle session: a notification, or the server's
  // goodbye (FATAL, then EOF). libpq reads an idle-time FATAL as a mere
  // notice and keeps the status OK until a query hits the EOF, so input that
  // delivers no notification is taken as the goodbye. (A rare asynchronous
  // ParameterStatus is misread too; that costs one reconnect.)
  try {
    if (impl_->conn->get_notifs() == 0) impl_->lost = true;
  } catch (...) {
    impl_->lost = true;
  }
  if (impl_->lost) return false;
  // libpq may have consumed the FATAL message without reading the EOF behind
  // it yet; a peek at the socket tells whether the server hung up.
  char byte = 0;
  const auto peeked = ::recv(pfd.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (peeked == 0 || (peeked < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    impl_->lost = true;
  }
  if (!impl_->conn->is_open()) impl_->lost = true;
  return !impl_->lost;
}

void Connection::ping() {
  exec("SELECT 1");
}

int Connection::backend_pid() const noexcept {
  return impl_ && impl_->conn ? impl_->conn->backendpid() : 0;
}

bool Connection::try_advisory_lock(std::int64_t key) {
  return exec("SELECT pg_try_advisory_lock($1)", {key}).one()[0].get<bool>();
}

bool Connection::advisory_unlock(std::int64_t key) {
  return exec("SELECT pg_advisory_unlock($1)", {key}).one()[0].get<bool>();
}

void Connection::listen(const std::string& channel) {
  impl_->require_usable();
  try {
    impl_->receivers.push_back(
        std::make_unique<Receiver>(*impl_->conn, channel, impl_->notifications));
  } catch (...) {
    rethrow_translated(impl_->context());
  }
}

std::vector<Notification> Connection::wait_for_notifications(std::chrono::milliseconds timeout) {
  impl_->require_usable();
  try {
    impl_->conn->get_notifs();
    if (impl_->notifications.empty() && timeout.count() > 0) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
      impl_->conn->await_notification(static_cast<long>(us / 1'000'000),
                                      static_cast<long>(us % 1'000'000));
    }
    // await_notification returns silently when the socket hit EOF.
    if (!impl_->conn->is_open()) throw pqxx::broken_connection("connection lost while listening");
  } catch (...) {
    rethrow_translated(impl_->context());
  }
  std::vector<Notification> out(std::make_move_iterator(impl_->notifications.begin()),
                                std::make_move_iterator(impl_->notifications.end()));
  impl_->notifications.clear();
  return out;
}

void Connection::close() noexcept {
  if (!impl_) return;
  impl_->receivers.clear();
  if (impl_->conn) impl_->conn->disconnect();
  impl_->lost = true;
}

// ---------------------------------------------------------------------------
// Transaction

struct Transaction::Impl {
  Connection::Impl* conn = nullptr;
  std::unique_ptr<pqxx::dbtransaction> tx;
  // A COPY was left unfinished: some of its rows may be in the transaction,
  // so it must not commit.
  bool copy_abandoned = false;

  void finish() noexcept {
    tx.reset();
    if (conn != nullptr) conn->in_transaction = false;
  }
};

namespace {
std::unique_ptr<pqxx::dbtransaction> start(pqxx::connection& c, const TransactionOptions& o) {
  using pqxx::read_only;
  using pqxx::read_write;
  switch (o.isolation) {
    case Isolation::read_committed:
      if (o.read_only)
        return std::make_unique<pqxx::transaction<pqxx::read_committed, read_only>>(c);
      return std::make_unique<pqxx::transaction<pqxx::read_committed, read_write>>(c);
    case Isolation::repeatable_read:
      if (o.read_only)
        return std::make_unique<pqxx::transaction<pqxx::repeatable_read, read_only>>(c);
      return std::make_unique<pqxx::transaction<pqxx::repeatable_read, read_write>>(c);
    case Isolation::serializable:
      if (o.read_only) return std::make_unique<pqxx::transaction<pqxx::serializable, read_only>>(c);
      return std::make_unique<pqxx::transaction<pqxx::serializable, read_write>>(c);
  }
  throw UsageError("unknown isolation level");
}
}  // namespace

Transaction Connection::begin(const TransactionOptions& options) {
  impl_->require_usable();
  if (impl_->in_transaction) throw UsageError("a transaction is already open on this connection");
  auto t = std::make_unique<Transaction::Impl>();
  t->conn = impl_.get();
  try {
    t->tx = start(*impl_->conn, options);
  } catch (...) {
    rethrow_translated(impl_->context());
  }
  impl_->in_transaction = true;
  return Transaction(std::move(t));
}

Transaction::Transaction(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Transaction::~Transaction() {
  abort();
}

Transaction::Transaction(Transaction&&) noexcept = default;

Transaction& Transaction::operator=(Transaction&& other) noexcept {
  if (this != &other) {
    abort();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

Result Transaction::exec(const Sql& statement, const Params& params) {
  const auto sql = statement.text();
  if (!impl_ || !impl_->tx) throw UsageError("transaction is already finished");
  impl_->conn->require_usable();
  try {
    return run(*impl_->tx, sql, params);
  } catch (...) {
    rethrow_translated(impl_->conn->context());
  }
}

void Transaction::commit() {
  if (!impl_ || !impl_->tx) throw UsageError("transaction is already finished");
  if (impl_->copy_abandoned) {
    abort();
    throw UsageError("a COPY in this transaction was not finished; the transaction was aborted");
  }
  try {
    impl_->tx->commit();
  } catch (...) {
    // Translate first: on a lost connection that closes it, so dropping the
    // libpqxx transaction below sends nothing.
    try {
      rethrow_translated(impl_->conn->context());
    } catch (...) {
      impl_->finish();
      throw;
    }
  }
  impl_->finish();
}

void Transaction::abort() noexcept {
  if (!impl_ || !impl_->tx) return;
  try {
    impl_->tx->abort();
  } catch (...) {
    // The ROLLBACK could not be sent: the session is in an unknown state.
    impl_->conn->lost = true;
  }
  impl_->finish();
}

std::string quote_identifier(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '"';
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// ---------------------------------------------------------------------------
// COPY ... FROM STDIN

namespace {

constexpr std::size_t kCopyChunkBytes = 64 * 1024;

bool is_identifier(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Text-format COPY escaping. Byte-wise, which is exact for UTF-8 (and every
// ASCII-compatible encoding whose multibyte sequences avoid ASCII bytes).
void append_escaped(std::string& out, std::string_view value) {
  std::size_t plain = 0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    const char* esc = nullptr;
    switch (c) {
      case '\\':
        esc = "\\\\";
        break;
      case '\n':
        esc = "\\n";
        break;
      case '\r':
        esc = "\\r";
        break;
      case '\t':
        esc = "\\t";
        break;
      default:
        continue;
    }
    out.append(value.substr(plain, i - plain));
    out.append(esc);
    plain = i + 1;
  }
  out.append(value.substr(plain));
}

}  // namespace

struct CopyIn::Impl {
  Connection::Impl* conn = nullptr;
  Transaction::Impl* tx = nullptr;
  std::unique_ptr<pqxx::tablewriter> writer;
  std::size_t columns = 0;
  std::size_t column = 0;  // in the current row
  std::uint64_t rows = 0;
  std::string buffer;  // whole rows (and the current one's start) not sent yet
  std::size_t row_start = 0;

  void require_open() const {
    if (!writer) throw UsageError("this COPY is already finished");
  }
  void field_separator() {
    require_open();
    if (column == columns) {
      throw UsageError("COPY row has more than " + std::to_string(columns) + " columns");
    }
    if (column > 0) buffer += '\t';
    ++column;
  }
  // Sends the complete rows buffered so far (the last one ends with '\n').
  void send(std::size_t upto) {
    if (upto == 0) return;
    try {
      // write_raw_line drops a trailing newline and adds its own.
      writer->write_raw_line(buffer.substr(0, upto));
    } catch (...) {
      rethrow_translated(conn->context());
    }
    buffer.erase(0, upto);
  }
};

CopyIn::CopyIn(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CopyIn::CopyIn(CopyIn&&) noexcept = default;
CopyIn& CopyIn::operator=(CopyIn&&) noexcept = default;

CopyIn::~CopyIn() {
  if (!impl_ || !impl_->writer) return;
  // Not finished: the COPY ends here (libpqxx swallows any error doing so)
  // with only some of the rows, so the transaction may no longer commit.
  impl_->tx->copy_abandoned = true;
  impl_->writer.reset();
}

CopyIn& CopyIn::text(std::string_view value) {
  impl_->field_separator();
  append_escaped(impl_->buffer, value);
  return *this;
}

CopyIn& CopyIn::integer(std::int64_t value) {
  impl_->field_separator();
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  (void)ec;  // 24 bytes always hold an int64
  impl_->buffer.append(buf, end);
  return *this;
}

CopyIn& CopyIn::null() {
  impl_->field_separator();
  impl_->buffer += "\\N";
  return *this;
}

CopyIn& CopyIn::end_row() {
  impl_->require_open();
  if (impl_->column != impl_->columns) {
    throw UsageError("COPY row has " + std::to_string(impl_->column) + " columns, expected " +
                     std::to_string(impl_->columns));
  }
  impl_->buffer += '\n';
  impl_->column = 0;
  ++impl_->rows;
  if (impl_->buffer.size() >= kCopyChunkBytes) impl_->send(impl_->buffer.size());
  return *this;
}

std::uint64_t CopyIn::finish() {
  impl_->require_open();
  if (impl_->column != 0) throw UsageError("COPY finished in the middle of a row");
  impl_->send(impl_->buffer.size());
  try {
    impl_->writer->complete();
  } catch (...) {
    impl_->writer.reset();
    rethrow_translated(impl_->conn->context());
  }
  impl_->writer.reset();
  return impl_->rows;
}

CopyIn Transaction::copy_in(std::string_view table, const std::vector<std::string>& columns) {
  if (!impl_ || !impl_->tx) throw UsageError("transaction is already finished");
  if (!is_identifier(table)) throw UsageError("COPY: bad table name '" + std::string(table) + "'");
  if (columns.empty()) throw UsageError("COPY: no columns");
  for (const auto& c : columns) {
    if (!is_identifier(c)) throw UsageError("COPY: bad column name '" + c + "'");
  }
  impl_->conn->require_usable();
  auto copy = std::make_unique<CopyIn::Impl>();
  copy->conn = impl_->conn;
  copy->tx = impl_.get();
  copy->columns = columns.size();
  copy->buffer.reserve(kCopyChunkBytes + 4096);
  try {
    // Deprecated in 6.4 in favour of stream_to, which cannot send rows we
    // escaped ourselves; tablewriter's raw-line path is the same protocol.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    copy->writer = std::make_unique<pqxx::tablewriter>(*impl_->tx, std::string(table),
                                                       columns.begin(), columns.end());
#pragma GCC diagnostic pop
  } catch (...) {
    rethrow_translated(impl_->conn->context());
  }
  return CopyIn(std::move(copy));
}

}  // namespace sb::pg
