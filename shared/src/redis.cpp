// The Redis client over hiredis 0.14 (blocking API).
#include "switchboard/shared/redis.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>

namespace sb::redis {

// ---------------------------------------------------------------------------
// Reply

Reply Reply::integer(std::int64_t value) {
  Reply r;
  r.type_ = Type::integer;
  r.integer_ = value;
  return r;
}
Reply Reply::string(std::string value) {
  Reply r;
  r.type_ = Type::string;
  r.text_ = std::move(value);
  return r;
}
Reply Reply::status(std::string value) {
  Reply r;
  r.type_ = Type::status;
  r.text_ = std::move(value);
  return r;
}
Reply Reply::error(std::string message) {
  Reply r;
  r.type_ = Type::error;
  r.text_ = std::move(message);
  return r;
}
Reply Reply::array(std::vector<Reply> elements) {
  Reply r;
  r.type_ = Type::array;
  r.elements_ = std::move(elements);
  return r;
}

std::string_view to_string(Reply::Type type) noexcept {
  switch (type) {
    case Reply::Type::nil:
      return "nil";
    case Reply::Type::integer:
      return "integer";
    case Reply::Type::string:
      return "string";
    case Reply::Type::array:
      return "array";
    case Reply::Type::status:
      return "status";
    case Reply::Type::error:
      return "error";
  }
  return "unknown";
}

namespace {
[[noreturn]] void wrong_type(Reply::Type want, const Reply& got) {
  std::string msg = "redis: expected a";
  msg += want == Reply::Type::integer || want == Reply::Type::array ? "n " : " ";
  msg += to_string(want);
  msg += " reply, got ";
  msg += to_string(got.type());
  if (got.is_error()) msg += ": " + got.as_string();
  throw Error(msg);
}
}  // namespace

std::int64_t Reply::as_integer() const {
  if (type_ != Type::integer) wrong_type(Type::integer, *this);
  return integer_;
}
const std::string& Reply::as_string() const {
  if (type_ != Type::string && type_ != Type::status && type_ != Type::error) {
    wrong_type(Type::string, *this);
  }
  return text_;
}
const std::vector<Reply>& Reply::elements() const {
  if (type_ != Type::array) wrong_type(Type::array, *this);
  return elements_;
}
const Reply& Reply::throw_if_error() const {
  if (type_ == Type::error) throw ReplyError("redis: " + text_);
  return *this;
}

// ---------------------------------------------------------------------------
// URL

namespace {

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%') {
      int v = 0;
      if (i + 2 >= in.size()) {
        throw Error("redis url: truncated percent-escape");
      }
      auto [p, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
      if (ec != std::errc() || p != in.data() + i + 3) {
        throw Error("redis url: bad percent-escape");
      }
      out += static_cast<char>(v);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

int parse_int(std::string_view text, const char* what, int lo, int hi) {
  int v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < lo || v > hi) {
    throw Error("redis url: bad " + std::string(what) + " \"" + std::string(text) + "\"");
  }
  return v;
}

}  // namespace

Endpoint parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) throw Error("redis url must start with redis://");
  std::string_view rest = url.substr(kScheme.size());
  Endpoint e;

  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) e.db = parse_int(db, "database", 0, 1 << 20);
  }
  // The last '@' ends the credentials: a raw '@' in a password is common.
  const auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view cred = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const auto colon = cred.find(':');
    if (colon == std::string_view::npos) {
      // redis://secret@host is the password-only form in common clients.
      e.password = percent_decode(cred);
    } else {
      e.username = percent_decode(cred.substr(0, colon));
      e.password = percent_decode(cred.substr(colon + 1));
    }
  }
  if (authority.starts_with('[')) {  // [::1]:6379
    const auto close = authority.find(']');
    if (close == std::string_view::npos) throw Error("redis url: unterminated IPv6 address");
    e.host = std::string(authority.substr(1, close - 1));
    authority = authority.substr(close + 1);
    if (authority.starts_with(':')) {
      e.port = parse_int(authority.substr(1), "port", 1, 65535);
    } else if (!authority.empty()) {
      throw Error("redis url: junk after IPv6 address");
    }
  } else {
    const auto colon = authority.rfind(':');
    e.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      e.port = parse_int(authority.substr(colon + 1), "port", 1, 65535);
    }
  }
  if (e.host.empty()) throw Error("redis url: missing host");
  return e;
}

// ---------------------------------------------------------------------------
// Client

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

struct ContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;

struct ReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

Reply convert(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
      return Reply::string(std::string(r->str, r->len));
    case REDIS_REPLY_STATUS:
      return Reply::status(std::string(r->str, r->len));
    case REDIS_REPLY_ERROR:
      return Reply::error(std::string(r->str, r->len));
    case REDIS_REPLY_INTEGER:
      return Reply::integer(r->integer);
    case REDIS_REPLY_NIL:
      return Reply();
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> items;
      items.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) items.push_back(convert(r->element[i]));
      return Reply::array(std::move(items));
    }
    default:
      throw Error("redis: unknown reply type " + std::to_string(r->type));
  }
}

// hiredis writes with write(2): on a socket the server closed, that raises
// SIGPIPE, which kills the process unless ignored. Block it on this thread
// for the duration of the call and swallow one we caused (libpq's approach),
// so the library is safe whatever the process's signal setup.
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old_);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigemptyset(&pending);
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        const timespec zero{};
        sigtimedwait(&set, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

}  // namespace

struct Client::Impl {
  Options options;
  Endpoint endpoint;
  mutable std::mutex mutex;
  ContextPtr ctx;

  std::string where() const { return endpoint.host + ":" + std::to_string(endpoint.port); }

  // Turns the context's error into an exception and drops the connection:
  // after a failed or timed-out command the stream position is unknown.
  [[noreturn]] void fail(std::string_view doing, int saved_errno) {
    std::string detail = ctx ? ctx->errstr : "no context";
    const bool timed_out = ctx && ctx->err == REDIS_ERR_IO &&
                           (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK ||
                            saved_errno == ETIMEDOUT || saved_errno == EINPROGRESS);
    ctx.reset();
    std::string msg = "redis " + where() + ": " + std::string(doing) + ": " + detail;
    if (timed_out) throw TimeoutError(msg + " (timed out)");
    throw ConnectionError(msg);
  }

  Reply send(int argc, const char** argv, const std::size_t* lens, std::string_view name) {
    SigpipeGuard guard;
    errno = 0;
    ReplyPtr r(static_cast<redisReply*>(redisCommandArgv(ctx.get(), argc, argv, lens)));
    const int saved_errno = errno;
    if (!r) fail(name, saved_errno);
    return convert(r.get());
  }

  void connect() {
    errno = 0;
    ContextPtr c(redisConnectWithTimeout(endpoint.host.c_str(), endpoint.port,
                                         to_timeval(options.connect_timeout)));
    const int saved_errno = errno;
    if (!c) throw ConnectionError("redis " + where() + ": cannot allocate a context");
    if (c->err != 0) {
      std::string msg = "redis " + where() + ": cannot connect: " + c->errstr;
      if (saved_errno == ETIMEDOUT || saved_errno == EINPROGRESS) {
        throw TimeoutError(msg + " (timed out)");
      }
      throw ConnectionError(msg);
    }
    if (redisSetTimeout(c.get(), to_timeval(options.command_timeout)) != REDIS_OK) {
      throw ConnectionError("redis " + where() + ": cannot set the command timeout");
    }
    ctx = std::move(c);
    try {
      if (!endpoint.password.empty()) {
        Reply auth;
        if (endpoint.username.empty()) {
          const char* argv[] = {"AUTH", endpoint.password.c_str()};
          const std::size_t lens[] = {4, endpoint.password.size()};
          auth = send(2, argv, lens, "AUTH");
        } else {
          const char* argv[] = {"AUTH", endpoint.username.c_str(), endpoint.password.c_str()};
          const std::size_t lens[] = {4, endpoint.username.size(), endpoint.password.size()};
          auth = send(3, argv, lens, "AUTH");
        }
        if (auth.is_error())
          throw ConnectionError("redis " + where() + ": AUTH failed: " + auth.as_string());
      }
      if (endpoint.db != 0) {
        const std::string db = std::to_string(endpoint.db);
        const char* argv[] = {"SELECT", db.c_str()};
        const std::size_t lens[] = {6, db.size()};
        auto sel = send(2, argv, lens, "SELECT");
        if (sel.is_error())
          throw ConnectionError("redis " + where() + ": SELECT failed: " + sel.as_string());
      }
    } catch (...) {
      ctx.reset();
      throw;
    }
  }

  Reply run(int argc, const char** argv, const std::size_t* lens) {
    if (argc == 0) throw Error("redis: empty command");
    std::lock_guard lock(mutex);
    if (!ctx) connect();
    return send(argc, argv, lens, std::string_view(argv[0], lens[0]));
  }
};

Client::Client(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->endpoint = parse_url(options.url);
  impl_->options = std::move(options);
}

Client::~Client() = default;

Reply Client::command(std::initializer_list<std::string_view> args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (auto a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return impl_->run(static_cast<int>(argv.size()), argv.data(), lens.data());
}

Reply Client::command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return impl_->run(static_cast<int>(argv.size()), argv.data(), lens.data());
}

void Client::ping() {
  command({"PING"}).throw_if_error();
}

std::optional<std::string> Client::get(std::string_view key) {
  auto r = command({"GET", key});
  r.throw_if_error();
  if (r.is_nil()) return std::nullopt;
  return r.as_string();
}

void Client::set(std::string_view key, std::string_view value,
                 std::optional<std::chrono::milliseconds> ttl) {
  if (ttl) {
    const std::string ms = std::to_string(ttl->count());
    command({"SET", key, value, "PX", ms}).throw_if_error();
  } else {
    command({"SET", key, value}).throw_if_error();
  }
}

bool Client::set_if_absent(std::string_view key, std::string_view value,
                           std::optional<std::chrono::milliseconds> ttl) {
  Reply r;
  if (ttl) {
    const std::string ms = std::to_string(ttl->count());
    r = command({"SET", key, value, "NX", "PX", ms});
  } else {
    r = command({"SET", key, value, "NX"});
  }
  r.throw_if_error();
  return !r.is_nil();
}

std::int64_t Client::del(std::string_view key) {
  return command({"DEL", key}).throw_if_error().as_integer();
}

std::int64_t Client::incr(std::string_view key) {
  return command({"INCR", key}).throw_if_error().as_integer();
}

std::int64_t Client::incr_by(std::string_view key, std::int64_t delta) {
  const std::string d = std::to_string(delta);
  return command({"INCRBY", key, d}).throw_if_error().as_integer();
}

bool Client::expire(std::string_view key, std::chrono::milliseconds ttl) {
  const std::string ms = std::to_string(ttl.count());
  return command({"PEXPIRE", key, ms}).throw_if_error().as_integer() == 1;
}

std::int64_t Client::pttl(std::string_view key) {
  return command({"PTTL", key}).throw_if_error().as_integer();
}

Reply Client::eval(std::string_view script, const std::vector<std::string>& keys,
                   const std::vector<std::string>& args) {
  std::vector<std::string> cmd;
  cmd.reserve(3 + keys.size() + args.size());
  cmd.emplace_back("EVAL");
  cmd.emplace_back(script);
  cmd.push_back(std::to_string(keys.size()));
  cmd.insert(cmd.end(), keys.begin(), keys.end());
  cmd.insert(cmd.end(), args.begin(), args.end());
  auto r = command(cmd);
  r.throw_if_error();
  return r;
}

bool Client::is_connected() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->ctx != nullptr;
}

const Endpoint& Client::endpoint() const noexcept {
  return impl_->endpoint;
}

}  // namespace sb::redis
