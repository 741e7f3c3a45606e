// The identity plugin (identity.hpp): settings, endpoints, commands and the
// bootstrap of the platform's super admin. Decisions live in aggregates.cpp;
// this file does the I/O around them.
#include <rapidjson/document.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "broker_admin.hpp"
#include "login_guard.hpp"
#include "read_model.hpp"
#include "switchboard/broker/permissions.hpp"
#include "switchboard/events/uuid.hpp"
#include "switchboard/identity/aggregates.hpp"
#include "switchboard/identity/identity.hpp"
#include "switchboard/identity/model.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"

namespace sb::identity {
namespace {

using sdk::Request;
using sdk::Response;

constexpr std::uint64_t kOwaspOps = 2;
constexpr std::size_t kOwaspMemoryKib = 19456;

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// ---------------------------------------------------------------- answers

Response invalid(std::string_view field, std::string_view message) {
  return Response::error(400, "invalid_request", message,
                         "{\"field\":" + json::quoted(field) + "}");
}

Response forbidden(std::string_view message) {
  return Response::error(403, "forbidden", message);
}

Response invalid_credentials() {
  return Response::error(401, "invalid_credentials", "unknown user or wrong password");
}

Response overloaded() {
  auto r = Response::error(503, "overloaded", "too many password checks in progress");
  r.headers["Retry-After"] = "1";
  return r;
}

/// `extra` (JSON members, no braces) spliced into a JSON object reply.
Response with_members(Response r, const std::string& extra) {
  if (r.body.size() >= 2 && r.body.back() == '}') {
    r.body.pop_back();
    if (r.body.size() > 1) r.body += ',';
    r.body += extra + "}";
  }
  return r;
}

/// A broker user's permissions as the issue_plugin_credentials reply shows
/// them: the three regexes and the topic permissions.
std::string permissions_json(const broker::Permissions& p) {
  std::string out = "{\"configure\":" + json::quoted(p.configure) +
                    ",\"write\":" + json::quoted(p.write) + ",\"read\":" + json::quoted(p.read) +
                    ",\"topics\":[";
  for (std::size_t i = 0; i < p.topics.size(); ++i) {
    if (i) out += ',';
    out += "{\"exchange\":" + json::quoted(p.topics[i].exchange) +
           ",\"write\":" + json::quoted(p.topics[i].write) +
           ",\"read\":" + json::quoted(p.topics[i].read) + "}";
  }
  return out + "]}";
}

/// The body as a JSON object, or the 400 to answer.
struct Body {
  rapidjson::Document doc;
  std::optional<Response> error;
};
Body parse_body(const std::string& text) {
  Body b;
  try {
    b.doc = json::parse(text.empty() ? std::string_view("{}") : std::string_view(text));
  } catch (const json::Error& e) {
    b.error = Response::error(400, "malformed_json", e.what());
    return b;
  }
  if (!b.doc.IsObject()) b.error = invalid("", "the body must be a JSON object");
  return b;
}

/// A required string member; nullopt (and `error` set) when missing.
std::optional<std::string> required_string(const rapidjson::Value& d, const char* key,
                                           std::optional<Response>& error) {
  const auto* v = json::find(d, key);
  if (v == nullptr || !v->IsString()) {
    error = invalid(key, std::string(key) + " is required and must be a string");
    return std::nullopt;
  }
  return std::string(v->GetString(), v->GetStringLength());
}

std::optional<std::vector<std::string>> string_list(const rapidjson::Value& d, const char* key) {
  const auto* v = json::find(d, key);
  if (v == nullptr) return std::nullopt;
  std::vector<std::string> out;
  if (!v->IsArray()) return out;
  for (const auto& s : v->GetArray()) {
    if (s.IsString()) out.emplace_back(s.GetString(), s.GetStringLength());
  }
  return out;
}

std::string actor_user(const Request& r) {
  constexpr std::string_view kUserPrefix = "user:";
  if (r.actor.rfind(kUserPrefix, 0) == 0) return r.actor.substr(kUserPrefix.size());
  return "";
}

// ---------------------------------------------------------------- the service

struct Service {
  explicit Service(Settings s)
      : settings(std::move(s)),
        jwt(settings.jwt),
        guard({settings.redis_url, settings.user_failure_limit, settings.address_failure_limit,
               settings.failure_window}),
        slots(settings.verify_slots) {}
  ~Service() {
    if (bootstrapper.joinable()) bootstrapper.join();
  }
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  Settings settings;
  auth::JwtVerifier jwt;
  LoginGuard guard;
  HashSlots slots;
  std::shared_ptr<pg::Pool> db;
  std::unique_ptr<sdk::StoreLoader> loader;
  // Verified when the user does not exist, so that answer takes as long.
  std::string dummy_hash;

  // Bootstrap thread.
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread bootstrapper;

  template <class State>
  State load(std::string_view stream, const std::string& tenant) const {
    State s{};
    auto fold = in_tenant<State>(tenant);
    loader->load(stream, [&](const events::Event& e) { fold(s, e); });
    return s;
  }
};

/// A request on whose behalf an endpoint appends (CommandContext refers to
/// it, so it outlives the context).
Request acting(const Request& r, std::string tenant, std::string command_id, std::string actor) {
  Request a;
  a.kind = Request::Kind::command;
  a.tenant = std::move(tenant);
  a.command_id = std::move(command_id);
  a.actor = std::move(actor);
  a.correlation_id = r.correlation_id.empty() ? a.command_id : r.correlation_id;
  a.traceparent = r.traceparent;
  a.deadline = r.deadline;
  a.request_id = r.request_id;
  return a;
}

/// The hierarchy-aware role check, again in the service (the edge checks
/// first; this keeps a misrouted call harmless).
std::optional<Response> refused(const Request& r, const std::vector<std::string>& roles) {
  if (!auth::role_check_passes(r.roles, roles)) {
    return forbidden("the caller lacks the role this needs");
  }
  if (!valid_tenant(r.tenant)) return forbidden("the caller acts for no valid tenant");
  return std::nullopt;
}

sdk::CommandHandler guarded(std::vector<std::string> roles, sdk::CommandHandler handler) {
  return [roles = std::move(roles), handler = std::move(handler)](sdk::CommandContext& ctx) {
    if (auto no = refused(ctx.request(), roles)) return *no;
    return handler(ctx);
  };
}

sdk::RequestHandler guarded(std::vector<std::string> roles, sdk::RequestHandler handler) {
  return [roles = std::move(roles), handler = std::move(handler)](const Request& r) {
    if (auto no = refused(r, roles)) return *no;
    return handler(r);
  };
}

/// Roles a caller may grant: super_admin only by a super admin, only in
/// _platform.
std::optional<Response> check_grant(const Request& r, const std::vector<std::string>& roles,
                                    std::string_view tenant) {
  for (const auto& role : roles) {
    if (!valid_role(role)) return invalid("roles", "invalid role name: " + role);
    if (role == kSuperAdmin) {
      if (!auth::role_admits(r.roles, kSuperAdmin)) {
        return forbidden("only a super admin grants super_admin");
      }
      if (tenant != kPlatformTenant) {
        return invalid("roles", "super_admin exists only in the _platform tenant");
      }
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- tokens

std::string token_reply(const Service& s, const User& u, const std::string& tenant,
                        const RefreshToken& refresh, std::int64_t refresh_expires_at,
                        std::int64_t now) {
  auth::Principal p;
  p.subject = u.user_id;
  p.tenant = tenant;
  p.roles = u.roles;
  p.expires_at = now + kAccessTokenSeconds;
  p.token_id = events::uuid_v4().to_string();
  p.session_id = refresh.session_id;
  p.user_version = u.security_version;
  return "{\"access_token\":" + json::quoted(s.jwt.sign(p, now)) +
         ",\"token_type\":\"Bearer\",\"expires_in\":" + std::to_string(kAccessTokenSeconds) +
         ",\"refresh_token\":" + json::quoted(refresh.text()) + ",\"refresh_expires_in\":" +
         std::to_string(std::max<std::int64_t>(0, refresh_expires_at - now)) +
         ",\"user_id\":" + json::quoted(u.user_id) + ",\"tenant\":" + json::quoted(tenant) +
         ",\"roles\":" + json_strings(u.roles) + "}";
}

Response login(Service& s, const Request& r) {
  auto body = parse_body(r.body);
  if (body.error) return *body.error;
  std::optional<Response> err;
  auto tenant = required_string(body.doc, "tenant", err);
  auto username = tenant ? required_string(body.doc, "username", err) : std::nullopt;
  auto password = username ? required_string(body.doc, "password", err) : std::nullopt;
  if (err) return *err;
  if (!valid_tenant(*tenant)) return invalid("tenant", "malformed tenant id");
  if (!valid_username(*username)) return invalid("username", "a username is 1-64 printable chars");
  if (password->size() > 256) return invalid("password", "a password is at most 256 bytes");
  if (r.store == nullptr) return Response::error(503, "unavailable", "not started");

  const auto name = normalize_username(*username);
  const auto address = client_address(r.client_address);
  if (auto wait = s.guard.blocked(*tenant, name, address)) {
    auto out = Response::error(429, "too_many_attempts", "too many failed logins; try later",
                               "{\"retry_after\":" + std::to_string(*wait) + "}");
    out.headers["Retry-After"] = std::to_string(*wait);
    return out;
  }
  const auto uid = user_id(*tenant, name);
  const auto t = s.load<Tenant>(tenant_stream(*tenant), *tenant);
  const auto u = s.load<User>(user_stream(uid), *tenant);
  bool ok = false;
  {
    SlotLease lease(s.slots, s.settings.verify_wait);
    if (!lease) return overloaded();
    const bool has_password = u.exists && !u.password_hash.empty();
    ok = auth::verify_password(has_password ? u.password_hash : s.dummy_hash, *password) &&
         has_password;
  }
  ok = ok && u.active && t.exists && !t.suspended;
  if (!ok) {
    s.guard.failed(*tenant, name, address);
    return invalid_credentials();
  }
  s.guard.succeeded(*tenant, name);

  const auto now = now_s();
  const auto refresh = new_refresh_token();
  const auto expires_at = now + kRefreshTokenSeconds;
  auto as = acting(r, *tenant, "login:" + refresh.session_id, "user:" + uid);
  sdk::CommandContext ctx(as, *r.store);
  auto done = sdk::execute<Session>(ctx, *s.loader, session_stream(refresh.session_id),
                                    in_tenant<Session>(*tenant), [&](const Session& st) {
                                      return start_session(st, refresh.session_id, uid,
                                                           secret_hash(refresh.text()), expires_at);
                                    });
  if (done.kind != sdk::Executed::Kind::appended) return done.response();
  return Response::json(token_reply(s, u, *tenant, refresh, expires_at, now));
}

Response refresh(Service& s, const Request& r) {
  auto body = parse_body(r.body);
  if (body.error) return *body.error;
  std::optional<Response> err;
  auto text = required_string(body.doc, "refresh_token", err);
  if (err) return *err;
  auto invalid_token = [] {
    return Response::error(401, "invalid_refresh_token",
                           "the refresh token is unknown, expired, revoked or reused");
  };
  auto presented = parse_refresh_token(*text);
  if (!presented) return invalid_token();
  if (r.store == nullptr) return Response::error(503, "unavailable", "not started");
  // The session's own tenant (session ids are random: one tenant per stream).
  Session first;
  s.loader->load(session_stream(presented->session_id),
                 [&](const events::Event& e) { apply(first, e); });
  if (!first.exists) return invalid_token();
  const auto tenant = first.tenant;
  const auto now = now_s();
  const auto presented_hash = secret_hash(presented->text());
  // The user the new access token is for, read once (a rotation needs it).
  std::optional<User> user;
  if (judge_refresh(first, presented_hash, now) == RefreshVerdict::rotate) {
    // A deactivated user or a suspended tenant gets no new access token.
    user = s.load<User>(user_stream(first.user_id), tenant);
    const auto t = s.load<Tenant>(tenant_stream(tenant), tenant);
    if (!user->exists || !user->active || !t.exists || t.suspended) return invalid_token();
  }
  RefreshToken next{presented->session_id, new_refresh_token().secret};
  const auto next_hash = secret_hash(next.text());
  auto as = acting(r, tenant, "refresh:" + events::uuid_v4().to_string(), "user:" + first.user_id);
  sdk::CommandContext ctx(as, *r.store);
  RefreshVerdict verdict = RefreshVerdict::invalid;
  std::int64_t expires_at = 0;
  auto done = sdk::execute<Session>(ctx, *s.loader, session_stream(presented->session_id),
                                    in_tenant<Session>(tenant), [&](const Session& st) {
                                      verdict = judge_refresh(st, presented_hash, now);
                                      expires_at = st.expires_at;
                                      return refresh_session(st, presented_hash, next_hash, now);
                                    });
  if (done.kind != sdk::Executed::Kind::appended) return done.response();
  if (verdict == RefreshVerdict::reuse) {
    log::warn("refresh token reused: session revoked",
              {{"tenant", tenant}, {"session", presented->session_id}});
    return invalid_token();
  }
  // Rotated: the session held the presented token as current when `first`
  // was read too (a rotation replaces it with a fresh random one), so `user`
  // is set; read it should that ever not hold.
  if (!user) user = s.load<User>(user_stream(first.user_id), tenant);
  return Response::json(token_reply(s, *user, tenant, next, expires_at, now));
}

Response logout(Service& s, const Request& r) {
  auto body = parse_body(r.body);
  if (body.error) return *body.error;
  std::optional<Response> err;
  auto text = required_string(body.doc, "refresh_token", err);
  if (err) return *err;
  const auto caller = actor_user(r);
  if (caller.empty()) return forbidden("only a user logs out");
  auto presented = parse_refresh_token(*text);
  if (!presented) {
    return Response::error(401, "invalid_refresh_token", "not a refresh token");
  }
  if (r.store == nullptr) return Response::error(503, "unavailable", "not started");
  auto as = acting(r, r.tenant, "logout:" + events::uuid_v4().to_string(), r.actor);
  sdk::CommandContext ctx(as, *r.store);
  const auto hash = secret_hash(presented->text());
  auto done = sdk::execute<Session>(
      ctx, *s.loader, session_stream(presented->session_id), in_tenant<Session>(r.tenant),
      [&](const Session& st) { return logout_session(st, caller, hash, now_s()); });
  if (!done.ok()) return done.response();
  Response out;
  out.status = 204;
  out.content_type.clear();
  return out;
}

Response accept_invitation_endpoint(Service& s, const Request& r) {
  auto body = parse_body(r.body);
  if (body.error) return *body.error;
  std::optional<Response> err;
  auto tenant = required_string(body.doc, "tenant", err);
  auto username = tenant ? required_string(body.doc, "username", err) : std::nullopt;
  auto token = username ? required_string(body.doc, "invitation_token", err) : std::nullopt;
  auto password = token ? required_string(body.doc, "password", err) : std::nullopt;
  if (err) return *err;
  if (!valid_tenant(*tenant)) return invalid("tenant", "malformed tenant id");
  if (!valid_username(*username)) return invalid("username", "a username is 1-64 printable chars");
  if (!valid_password(*password)) return invalid("password", "a password is 8-256 bytes");
  if (r.store == nullptr) return Response::error(503, "unavailable", "not started");
  const auto uid = user_id(*tenant, *username);
  std::string hash;
  {
    SlotLease lease(s.slots, s.settings.verify_wait);
    if (!lease) return overloaded();
    hash = auth::hash_password(*password, s.settings.password_cost);
  }
  auto as = acting(r, *tenant, "accept:" + events::uuid_v4().to_string(), "user:" + uid);
  sdk::CommandContext ctx(as, *r.store);
  auto done = sdk::execute<User>(
      ctx, *s.loader, user_stream(uid), in_tenant<User>(*tenant), [&](const User& u) {
        bool ok = false;
        for (const auto& key : s.settings.jwt.secrets) {
          ok = ok || auth::constant_time_equal(
                         invitation_token(key, *tenant, uid, u.registered_event_id), *token);
        }
        return accept_invitation(u, ok, now_s(), hash);
      });
  if (!done.ok()) return done.response();
  return with_members(done.response(), "\"user_id\":" + json::quoted(uid));
}

// ---------------------------------------------------------------- queries

Response me(const Service& s, const Request& r) {
  const auto uid = actor_user(r);
  if (uid.empty()) return Response::error(404, "not_found", "the caller is not a user");
  const auto u = s.load<User>(user_stream(uid), r.tenant);
  if (!u.exists) return Response::error(404, "not_found", "no such user");
  return Response::json(
      "{\"user_id\":" + json::quoted(u.user_id) + ",\"tenant\":" + json::quoted(r.tenant) +
      ",\"username\":" + json::quoted(u.username) + ",\"email\":" + json::quoted(u.email) +
      ",\"roles\":" + json_strings(u.roles) + ",\"active\":" + (u.active ? "true" : "false") +
      ",\"invited\":" + (u.invited ? "true" : "false") +
      ",\"security_version\":" + std::to_string(u.security_version) + "}");
}

/// limit/offset query parameters (1..500, >= 0).
std::optional<Response> paging(const Request& r, std::int64_t& limit, std::int64_t& offset) {
  limit = 100;
  offset = 0;
  try {
    if (auto l = r.query_param("limit")) limit = std::stoll(*l);
    if (auto o = r.query_param("offset")) offset = std::stoll(*o);
  } catch (const std::exception&) {
    return invalid("limit", "limit and offset must be integers");
  }
  if (limit < 1 || limit > 500) return invalid("limit", "limit is 1..500");
  if (offset < 0) return invalid("offset", "offset is >= 0");
  return std::nullopt;
}

std::string b(bool v) {
  return v ? "true" : "false";
}

Response list_users(const Service& s, const Request& r) {
  std::int64_t limit = 0;
  std::int64_t offset = 0;
  if (auto e = paging(r, limit, offset)) return *e;
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec(
        "SELECT user_id, username, email, roles, invited, active, security_version, created_at "
        "FROM identity_users WHERE tenant = $1 ORDER BY lower(username) LIMIT $2 OFFSET $3",
        {r.tenant, limit, offset});
    std::string out = "{\"users\":[";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out += ',';
      first = false;
      out += "{\"user_id\":" + json::quoted(row["user_id"].get<std::string>()) +
             ",\"username\":" + json::quoted(row["username"].get<std::string>()) +
             ",\"email\":" + json::quoted(row["email"].get<std::string>()) +
             ",\"roles\":" + row["roles"].get<std::string>() +
             ",\"invited\":" + b(row["invited"].get<bool>()) +
             ",\"active\":" + b(row["active"].get<bool>()) + ",\"security_version\":" +
             std::to_string(row["security_version"].get<std::int64_t>()) +
             ",\"created_at\":" + json::quoted(row["created_at"].get<std::string>()) + "}";
    }
    return Response::json(out + "]}");
  });
}

std::string tenant_json(const pg::Row& row) {
  return "{\"tenant\":" + json::quoted(row["tenant"].get<std::string>()) +
         ",\"name\":" + json::quoted(row["name"].get<std::string>()) +
         ",\"services\":" + row["services"].get<std::string>() +
         ",\"disabled\":" + row["disabled"].get<std::string>() +
         ",\"suspended\":" + b(row["suspended"].get<bool>()) +
         ",\"created_at\":" + json::quoted(row["created_at"].get<std::string>()) + "}";
}

Response list_tenants(const Service& s, const Request& r) {
  std::int64_t limit = 0;
  std::int64_t offset = 0;
  if (auto e = paging(r, limit, offset)) return *e;
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec(
        "SELECT tenant, name, services, disabled, suspended, created_at FROM identity_tenants "
        "ORDER BY tenant LIMIT $1 OFFSET $2",
        {limit, offset});
    std::string out = "{\"tenants\":[";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out += ',';
      first = false;
      out += tenant_json(row);
    }
    return Response::json(out + "]}");
  });
}

Response get_tenant(const Service& s, const Request& r) {
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto row = tx.exec(
                     "SELECT tenant, name, services, disabled, suspended, created_at "
                     "FROM identity_tenants WHERE tenant = $1",
                     {r.tenant})
                   .optional_one();
    if (!row) return Response::error(404, "not_found", "the tenant is not known to identity");
    return Response::json(tenant_json(*row));
  });
}

Response list_roles(const Service& s, const Request& r) {
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec(
        "SELECT role, permissions FROM identity_roles WHERE tenant = $1 ORDER BY role", {r.tenant});
    std::string out = "{\"roles\":[";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out += ',';
      first = false;
      out += "{\"role\":" + json::quoted(row["role"].get<std::string>()) +
             ",\"permissions\":" + row["permissions"].get<std::string>() + "}";
    }
    return Response::json(out + "]}");
  });
}

Response list_api_keys(const Service& s, const Request& r) {
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec(
        "SELECT key_id, prefix, name, owner, roles, scopes, expires_at, revoked, created_at "
        "FROM identity_api_keys WHERE tenant = $1 ORDER BY position",
        {r.tenant});
    std::string out = "{\"api_keys\":[";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out += ',';
      first = false;
      out += "{\"key_id\":" + json::quoted(row["key_id"].get<std::string>()) +
             ",\"prefix\":" + json::quoted(row["prefix"].get<std::string>()) +
             ",\"name\":" + json::quoted(row["name"].get<std::string>()) +
             ",\"owner\":" + json::quoted(row["owner"].get<std::string>()) +
             ",\"roles\":" + row["roles"].get<std::string>() +
             ",\"scopes\":" + row["scopes"].get<std::string>() +
             ",\"expires_at\":" + std::to_string(row["expires_at"].get<std::int64_t>()) +
             ",\"revoked\":" + b(row["revoked"].get<bool>()) +
             ",\"created_at\":" + json::quoted(row["created_at"].get<std::string>()) + "}";
    }
    return Response::json(out + "]}");
  });
}

Response get_config(const Service& s, const Request& r) {
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto rows = tx.exec("SELECT key, value FROM identity_config WHERE tenant = $1 ORDER BY key",
                        {r.tenant});
    std::string out = "{\"tenant\":" + json::quoted(r.tenant) + ",\"config\":{";
    bool first = true;
    for (const auto& row : rows) {
      if (!first) out += ',';
      first = false;
      out += json::quoted(row["key"].get<std::string>()) + ":" + row["value"].get<std::string>();
    }
    return Response::json(out + "}}");
  });
}

Response get_config_key(const Service& s, const Request& r) {
  const auto& key = r.params.at("key");
  if (!valid_config_key(key)) return invalid("key", "malformed config key");
  return pg::with_transaction(*s.db, [&](pg::Transaction& tx) {
    auto row =
        tx.exec("SELECT value FROM identity_config WHERE tenant = $1 AND key = $2", {r.tenant, key})
            .optional_one();
    if (!row) return Response::error(404, "not_found", "no config value " + key);
    return Response::json("{\"key\":" + json::quoted(key) +
                          ",\"value\":" + (*row)["value"].get<std::string>() + "}");
  });
}

// ---------------------------------------------------------------- commands

constexpr const char* kCreateTenantSchema =
    R"({"type":"object","required":["tenant","name"],"properties":{"tenant":{"type":"string"},"name":{"type":"string","minLength":1,"maxLength":200},"services":{"type":"array","items":{"type":"string"},"maxItems":256}},"additionalProperties":false})";
constexpr const char* kServiceSchema =
    R"({"type":"object","required":["service"],"properties":{"service":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kReasonSchema =
    R"({"type":"object","properties":{"reason":{"type":"string","maxLength":1000}},"additionalProperties":false})";
constexpr const char* kRegisterSchema =
    R"({"type":"object","required":["username","password"],"properties":{"username":{"type":"string"},"password":{"type":"string"},"email":{"type":"string","maxLength":320},"roles":{"type":"array","items":{"type":"string"},"maxItems":64}},"additionalProperties":false})";
constexpr const char* kInviteSchema =
    R"({"type":"object","required":["username"],"properties":{"username":{"type":"string"},"email":{"type":"string","maxLength":320},"roles":{"type":"array","items":{"type":"string"},"maxItems":64}},"additionalProperties":false})";
constexpr const char* kAcceptSchema =
    R"({"type":"object","required":["tenant","username","invitation_token","password"],"properties":{"tenant":{"type":"string"},"username":{"type":"string"},"invitation_token":{"type":"string"},"password":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kChangeRolesSchema =
    R"({"type":"object","required":["user_id","roles"],"properties":{"user_id":{"type":"string"},"roles":{"type":"array","items":{"type":"string"},"maxItems":64}},"additionalProperties":false})";
constexpr const char* kUserIdSchema =
    R"({"type":"object","required":["user_id"],"properties":{"user_id":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kChangePasswordSchema =
    R"({"type":"object","required":["current_password","new_password"],"properties":{"current_password":{"type":"string"},"new_password":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kDefineRoleSchema =
    R"({"type":"object","required":["role","permissions"],"properties":{"role":{"type":"string"},"permissions":{"type":"array","items":{"type":"string"},"maxItems":256}},"additionalProperties":false})";
constexpr const char* kRoleSchema =
    R"({"type":"object","required":["role"],"properties":{"role":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kIssueKeySchema =
    R"({"type":"object","required":["name","scopes"],"properties":{"name":{"type":"string","minLength":1,"maxLength":200},"roles":{"type":"array","items":{"type":"string"},"maxItems":64},"scopes":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":256},"expires_in_s":{"type":"integer","minimum":1}},"additionalProperties":false})";
constexpr const char* kKeyIdSchema =
    R"({"type":"object","required":["key_id"],"properties":{"key_id":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kSetConfigSchema =
    R"({"type":"object","required":["key","value"],"properties":{"key":{"type":"string"},"value":{}},"additionalProperties":false})";
constexpr const char* kUnsetConfigSchema =
    R"({"type":"object","required":["key"],"properties":{"key":{"type":"string"}},"additionalProperties":false})";
constexpr const char* kPluginSchema =
    R"({"type":"object","required":["plugin"],"properties":{"plugin":{"type":"string"}},"additionalProperties":false})";

std::vector<std::string> list_or(const rapidjson::Value& d, const char* key,
                                 std::vector<std::string> fallback) {
  auto v = string_list(d, key);
  return v ? *v : fallback;
}

bool valid_uuid(std::string_view s) {
  return events::Uuid::try_parse(s).has_value();
}

void add_commands(sdk::Plugin& p, const std::shared_ptr<Service>& s) {
  const std::vector<std::string> super{std::string(kSuperAdmin)};
  const std::vector<std::string> admin{std::string(kTenantAdmin)};
  auto command = [&](const char* name, const char* schema, std::vector<std::string> roles,
                     sdk::CommandHandler h, std::vector<std::string_view> emits,
                     const char* description) {
    p.command(std::string("identity.") + name, schema, guarded(roles, std::move(h)), roles);
    for (auto e : emits) p.commands.back().emits.emplace_back(e);
    p.commands.back().description = description;
  };

  command(
      "create_tenant", kCreateTenantSchema, super,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto tenant = json::require_string(d, "tenant");
        if (!valid_tenant(tenant))
          return invalid("tenant", "a tenant id is [a-z0-9_][a-z0-9_-]{0,62}");
        const auto services = list_or(d, "services", {"*"});
        for (const auto& sv : services) {
          if (!valid_service(sv)) return invalid("services", "invalid service name: " + sv);
        }
        // The stream belongs to the new tenant.
        auto as = acting(ctx.request(), tenant, ctx.command_id(), ctx.actor());
        sdk::CommandContext inner(as, *ctx.request().store);
        return sdk::execute<Tenant>(
                   inner, *s->loader, tenant_stream(tenant), in_tenant<Tenant>(tenant),
                   [&](const Tenant& t) {
                     return create_tenant(t, json::require_string(d, "name"), services);
                   })
            .response();
      },
      {kTenantCreated}, "Create a tenant (super_admin).");

  auto tenant_command = [&](const char* name, const char* schema,
                            std::function<sdk::Decision(const Tenant&, const rapidjson::Value&)> f,
                            std::string_view emits, const char* description) {
    command(
        name, schema, super,
        [s, f](sdk::CommandContext& ctx) {
          auto d = json::parse(ctx.body());
          if (const auto* sv = json::find(d, "service");
              sv && (!sv->IsString() || !valid_service(sv->GetString()) ||
                     std::string_view(sv->GetString()) == "*")) {
            return invalid("service", "invalid service name");
          }
          return sdk::execute<Tenant>(ctx, *s->loader, tenant_stream(ctx.tenant()),
                                      in_tenant<Tenant>(ctx.tenant()),
                                      [&](const Tenant& t) { return f(t, d); })
              .response();
        },
        {emits}, description);
  };
  tenant_command(
      "enable_service", kServiceSchema,
      [](const Tenant& t, const rapidjson::Value& d) {
        return enable_service(t, json::require_string(d, "service"));
      },
      kTenantServicesChanged, "Enable a service for the tenant (super_admin).");
  tenant_command(
      "disable_service", kServiceSchema,
      [](const Tenant& t, const rapidjson::Value& d) {
        return disable_service(t, json::require_string(d, "service"));
      },
      kTenantServicesChanged, "Disable a service for the tenant (super_admin).");
  tenant_command(
      "suspend_tenant", kReasonSchema,
      [](const Tenant& t, const rapidjson::Value& d) {
        return suspend_tenant(t, json::optional_string(d, "reason").value_or(""));
      },
      kTenantSuspended, "Suspend the tenant (super_admin).");
  tenant_command(
      "reinstate_tenant", kReasonSchema,
      [](const Tenant& t, const rapidjson::Value& d) {
        return reinstate_tenant(t, json::optional_string(d, "reason").value_or(""));
      },
      kTenantReinstated, "Reinstate the tenant (super_admin).");

  auto register_like = [s](sdk::CommandContext& ctx, bool invitation) -> Response {
    auto d = json::parse(ctx.body());
    const auto username = json::require_string(d, "username");
    if (!valid_username(username)) {
      return invalid("username", "a username is 1-64 printable characters");
    }
    const auto email = json::optional_string(d, "email").value_or("");
    const auto roles = list_or(d, "roles", {std::string(kUser)});
    if (auto e = check_grant(ctx.request(), roles, ctx.tenant())) return *e;
    NewUser u{user_id(ctx.tenant(), username), username, email, roles, ""};
    if (!invitation) {
      const auto password = json::require_string(d, "password");
      if (!valid_password(password)) return invalid("password", "a password is 8-256 bytes");
      SlotLease lease(s->slots, s->settings.verify_wait);
      if (!lease) return overloaded();
      u.password_hash = auth::hash_password(password, s->settings.password_cost);
    }
    auto done =
        sdk::execute<User>(ctx, *s->loader, user_stream(u.user_id), in_tenant<User>(ctx.tenant()),
                           [&](const User& st) { return register_user(st, u); });
    if (done.kind != sdk::Executed::Kind::appended) return done.response();
    std::string extra = "\"user_id\":" + json::quoted(u.user_id);
    if (invitation && !done.outcome.event_ids.empty()) {
      extra += ",\"invitation_token\":" +
               json::quoted(invitation_token(s->settings.jwt.secrets.front(), ctx.tenant(),
                                             u.user_id, done.outcome.event_ids.front())) +
               ",\"invitation_expires_in\":" + std::to_string(kInvitationSeconds);
    }
    return with_members(done.response(), extra);
  };
  command(
      "register_user", kRegisterSchema, admin,
      [register_like](sdk::CommandContext& ctx) { return register_like(ctx, false); },
      {kUserRegistered}, "Register a user in the tenant (tenant_admin).");
  command(
      "invite_user", kInviteSchema, admin,
      [register_like](sdk::CommandContext& ctx) { return register_like(ctx, true); },
      {kUserRegistered}, "Invite a user; the reply holds the invitation token, once.");

  command(
      "change_roles", kChangeRolesSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto uid = json::require_string(d, "user_id");
        if (!valid_uuid(uid)) return Response::error(404, "not_found", "no such user");
        const auto roles = list_or(d, "roles", {});
        if (auto e = check_grant(ctx.request(), roles, ctx.tenant())) return *e;
        const bool caller_super = auth::role_admits(ctx.request().roles, kSuperAdmin);
        return sdk::execute<User>(
                   ctx, *s->loader, user_stream(uid), in_tenant<User>(ctx.tenant()),
                   [&](const User& u) {
                     if (u.exists && !caller_super &&
                         std::find(u.roles.begin(), u.roles.end(), kSuperAdmin) != u.roles.end()) {
                       return sdk::Decision::refuse(403, "forbidden",
                                                    "only a super admin changes a super admin");
                     }
                     return change_roles(u, roles);
                   })
            .response();
      },
      {kUserRolesChanged}, "Replace a user's roles (tenant_admin).");

  auto user_toggle = [&](const char* name, bool deactivate, std::string_view emits,
                         const char* description) {
    command(
        name, kUserIdSchema, admin,
        [s, deactivate](sdk::CommandContext& ctx) {
          auto d = json::parse(ctx.body());
          const auto uid = json::require_string(d, "user_id");
          if (!valid_uuid(uid)) return Response::error(404, "not_found", "no such user");
          const bool caller_super = auth::role_admits(ctx.request().roles, kSuperAdmin);
          return sdk::execute<User>(
                     ctx, *s->loader, user_stream(uid), in_tenant<User>(ctx.tenant()),
                     [&](const User& u) {
                       if (u.exists && !caller_super &&
                           std::find(u.roles.begin(), u.roles.end(), kSuperAdmin) !=
                               u.roles.end()) {
                         return sdk::Decision::refuse(403, "forbidden",
                                                      "only a super admin changes a super admin");
                       }
                       return deactivate ? deactivate_user(u) : reactivate_user(u);
                     })
              .response();
        },
        {emits}, description);
  };
  user_toggle("deactivate_user", true, kUserDeactivated, "Deactivate a user (tenant_admin).");
  user_toggle("reactivate_user", false, kUserReactivated, "Reactivate a user (tenant_admin).");

  command(
      "change_password", kChangePasswordSchema, {},
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto uid = actor_user(ctx.request());
        if (uid.empty()) return forbidden("only a user changes their password");
        const auto current = json::require_string(d, "current_password");
        const auto next = json::require_string(d, "new_password");
        if (!valid_password(next)) return invalid("new_password", "a password is 8-256 bytes");
        SlotLease lease(s->slots, s->settings.verify_wait);
        if (!lease) return overloaded();
        const auto hash = auth::hash_password(next, s->settings.password_cost);
        return sdk::execute<User>(
                   ctx, *s->loader, user_stream(uid), in_tenant<User>(ctx.tenant()),
                   [&](const User& u) {
                     return change_password(
                         u, [&](std::string_view h) { return auth::verify_password(h, current); },
                         hash);
                   })
            .response();
      },
      {kUserPasswordChanged}, "Change the caller's own password.");

  command(
      "define_role", kDefineRoleSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto role = json::require_string(d, "role");
        if (!valid_custom_role(role)) {
          return invalid("role", "a custom role is [a-z][a-z0-9_.-]{0,62} and not built in");
        }
        const auto permissions = list_or(d, "permissions", {});
        for (std::size_t i = 0; i < permissions.size(); ++i) {
          if (!auth::valid_permission_pattern(permissions[i])) {
            return invalid("permissions/" + std::to_string(i),
                           "invalid permission pattern: " + permissions[i]);
          }
        }
        return sdk::execute<Role>(ctx, *s->loader, role_stream(ctx.tenant(), role),
                                  in_tenant<Role>(ctx.tenant()),
                                  [&](const Role& r) { return define_role(r, role, permissions); })
            .response();
      },
      {kRoleDefined}, "Define (or redefine) a custom role (tenant_admin).");
  command(
      "remove_role", kRoleSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto role = json::require_string(d, "role");
        if (!valid_custom_role(role)) return invalid("role", "not a custom role name");
        return sdk::execute<Role>(ctx, *s->loader, role_stream(ctx.tenant(), role),
                                  in_tenant<Role>(ctx.tenant()),
                                  [&](const Role& r) { return remove_role(r, role); })
            .response();
      },
      {kRoleRemoved}, "Remove a custom role (tenant_admin).");

  command(
      "issue_api_key", kIssueKeySchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        NewApiKey k;
        k.name = json::require_string(d, "name");
        k.roles = list_or(d, "roles", {std::string(kUser)});
        if (auto e = check_grant(ctx.request(), k.roles, ctx.tenant())) return *e;
        k.scopes = list_or(d, "scopes", {});
        for (std::size_t i = 0; i < k.scopes.size(); ++i) {
          if (!auth::valid_permission_pattern(k.scopes[i])) {
            return invalid("scopes/" + std::to_string(i), "invalid scope pattern: " + k.scopes[i]);
          }
        }
        if (auto in = json::optional_int64(d, "expires_in_s")) k.expires_at = now_s() + *in;
        k.owner = actor_user(ctx.request());
        if (k.owner.empty()) k.owner = ctx.actor();
        const auto key = auth::new_api_key();
        k.key_id = events::uuid_v4().to_string();
        k.prefix = key.prefix;
        k.key_hash = secret_hash(key.text());
        auto done = sdk::execute<ApiKeyState>(
            ctx, *s->loader, apikey_stream(k.key_id), in_tenant<ApiKeyState>(ctx.tenant()),
            [&](const ApiKeyState& st) { return issue_api_key(st, k); });
        if (done.kind != sdk::Executed::Kind::appended) return done.response();
        if (done.outcome.duplicate) {
          // The first reply showed the key; this retry holds another one.
          return Response::error(409, "already_issued",
                                 "this command issued its key before; the key is shown once");
        }
        return with_members(done.response(), "\"key_id\":" + json::quoted(k.key_id) +
                                                 ",\"api_key\":" + json::quoted(key.text()) +
                                                 ",\"prefix\":" + json::quoted(k.prefix) +
                                                 ",\"expires_at\":" + std::to_string(k.expires_at));
      },
      {kApiKeyIssued}, "Issue an API key; the reply shows it once (tenant_admin).");
  command(
      "revoke_api_key", kKeyIdSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto key_id = json::require_string(d, "key_id");
        if (!valid_uuid(key_id)) return Response::error(404, "not_found", "no such API key");
        return sdk::execute<ApiKeyState>(ctx, *s->loader, apikey_stream(key_id),
                                         in_tenant<ApiKeyState>(ctx.tenant()),
                                         [&](const ApiKeyState& k) { return revoke_api_key(k); })
            .response();
      },
      {kApiKeyRevoked}, "Revoke an API key (tenant_admin).");

  command(
      "set_config", kSetConfigSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto key = json::require_string(d, "key");
        if (!valid_config_key(key)) return invalid("key", "a config key is [A-Za-z0-9_.-]{1,128}");
        const auto value = json::to_string(json::require(d, "value"));
        return sdk::execute<TenantConfig>(
                   ctx, *s->loader, config_stream(ctx.tenant()),
                   in_tenant<TenantConfig>(ctx.tenant()),
                   [&](const TenantConfig& c) { return set_config(c, key, value); })
            .response();
      },
      {kConfigSet}, "Set a tenant config value (tenant_admin).");
  command(
      "unset_config", kUnsetConfigSchema, admin,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto key = json::require_string(d, "key");
        if (!valid_config_key(key)) return invalid("key", "a config key is [A-Za-z0-9_.-]{1,128}");
        return sdk::execute<TenantConfig>(
                   ctx, *s->loader, config_stream(ctx.tenant()),
                   in_tenant<TenantConfig>(ctx.tenant()),
                   [&](const TenantConfig& c) { return unset_config(c, key); })
            .response();
      },
      {kConfigUnset}, "Remove a tenant config value (tenant_admin).");

  command(
      "issue_plugin_credentials", kPluginSchema, super,
      [s](sdk::CommandContext& ctx) {
        auto d = json::parse(ctx.body());
        const auto plugin = json::require_string(d, "plugin");
        if (!broker::valid_plugin_name(plugin)) {
          return invalid("plugin",
                         "a plugin name is [a-z0-9][a-z0-9_-]{0,62}, not store, registry, edge, "
                         "identity, sb or amq");
        }
        const auto perms = broker::plugin_permissions(plugin);
        const auto user = broker::plugin_user(plugin);
        const auto vhost = vhost_of(s->settings.rabbitmq_url);
        const auto password = auth::random_token(24);
        // The broker user first: the event records only what took effect.
        // A retry creates it again with a new password (shown in that reply).
        BrokerAdminOptions o{s->settings.management_url, s->settings.management_user,
                             s->settings.management_password,
                             std::min<std::chrono::milliseconds>(
                                 std::chrono::milliseconds(5000),
                                 std::max<std::chrono::milliseconds>(std::chrono::milliseconds(100),
                                                                     ctx.request().remaining()))};
        auto made = put_plugin_user(o, user, password, vhost, perms);
        if (!made.ok) {
          log::error("could not create the plugin's broker user",
                     {{"plugin", plugin}, {"error", made.message}});
          return Response::error(503, "broker_unavailable",
                                 "the RabbitMQ management API refused or did not answer",
                                 "{\"reason\":" + json::quoted(made.message) + "}");
        }
        auto as =
            acting(ctx.request(), std::string(kPlatformTenant), ctx.command_id(), ctx.actor());
        sdk::CommandContext inner(as, *ctx.request().store);
        auto out = inner.append(
            plugin_credentials_stream(plugin), events::ExpectedVersion::any(),
            {{std::string(kPluginCredentialsIssued),
              "{\"plugin\":" + json::quoted(plugin) + ",\"broker_user\":" + json::quoted(user) +
                  ",\"vhost\":" + json::quoted(vhost) + "}"}});
        if (!out.ok) return out.response();
        return with_members(out.response(), "\"broker_user\":" + json::quoted(user) +
                                                ",\"password\":" + json::quoted(password) +
                                                ",\"vhost\":" + json::quoted(vhost) +
                                                ",\"permissions\":" + permissions_json(perms));
      },
      {kPluginCredentialsIssued},
      "Create the RabbitMQ user plugin-<name>; the reply shows its password once (super_admin).");
}

void add_endpoints(sdk::Plugin& p, const std::shared_ptr<Service>& s) {
  auto endpoint = [&](const char* method, const char* path, std::vector<std::string> roles,
                      bool is_public, sdk::RequestHandler h, bool reads_model) {
    sdk::Endpoint e;
    e.method = method;
    e.path = path;
    e.roles = roles;
    e.is_public = is_public;
    e.handler = is_public ? std::move(h) : guarded(roles, std::move(h));
    if (reads_model) e.projection = std::string(kReadModel);
    p.endpoint(std::move(e));
  };
  const std::vector<std::string> super{std::string(kSuperAdmin)};
  const std::vector<std::string> admin{std::string(kTenantAdmin)};
  endpoint(
      "POST", "/login", {}, true, [s](const Request& r) { return login(*s, r); }, false);
  endpoint(
      "POST", "/refresh", {}, true, [s](const Request& r) { return refresh(*s, r); }, false);
  endpoint(
      "POST", "/accept-invitation", {}, true,
      [s](const Request& r) { return accept_invitation_endpoint(*s, r); }, false);
  endpoint(
      "POST", "/logout", {}, false, [s](const Request& r) { return logout(*s, r); }, false);
  endpoint(
      "GET", "/me", {}, false, [s](const Request& r) { return me(*s, r); }, false);
  endpoint(
      "GET", "/users", admin, false, [s](const Request& r) { return list_users(*s, r); }, true);
  endpoint(
      "GET", "/tenants", super, false, [s](const Request& r) { return list_tenants(*s, r); }, true);
  endpoint(
      "GET", "/tenant", {}, false, [s](const Request& r) { return get_tenant(*s, r); }, true);
  endpoint(
      "GET", "/roles", admin, false, [s](const Request& r) { return list_roles(*s, r); }, true);
  endpoint(
      "GET", "/api-keys", admin, false, [s](const Request& r) { return list_api_keys(*s, r); },
      true);
  endpoint(
      "GET", "/config", {}, false, [s](const Request& r) { return get_config(*s, r); }, true);
  endpoint(
      "GET", "/config/{key}", {}, false, [s](const Request& r) { return get_config_key(*s, r); },
      true);
}

// ---------------------------------------------------------------- bootstrap

/// Creates `_platform` and the super admin unless there; idempotent (event
/// ids derive from fixed command ids, and existing streams are refused).
/// Returns whether both are in place.
bool bootstrap_once(Service& s, sdk::StoreClient& store, const std::string& hash) {
  const std::string platform(kPlatformTenant);
  Request base;
  base.deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  base.correlation_id = events::uuid_v4().to_string();
  auto as = acting(base, platform, "bootstrap:tenant", "service:identity");
  sdk::CommandContext tctx(as, store);
  auto t =
      sdk::execute<Tenant>(tctx, *s.loader, tenant_stream(platform), in_tenant<Tenant>(platform),
                           [](const Tenant& st) { return create_tenant(st, "Platform", {"*"}); });
  if (!(t.ok() || t.kind == sdk::Executed::Kind::refused)) {
    log::info("bootstrap: tenant not created yet",
              {{"code", t.outcome.code}, {"message", t.outcome.message}});
    return false;
  }
  const auto& name = s.settings.bootstrap_username;
  NewUser u{user_id(platform, name), name, "", {std::string(kSuperAdmin)}, hash};
  auto uas =
      acting(base, platform, "bootstrap:user:" + normalize_username(name), "service:identity");
  sdk::CommandContext uctx(uas, store);
  auto r = sdk::execute<User>(uctx, *s.loader, user_stream(u.user_id), in_tenant<User>(platform),
                              [&](const User& st) { return register_user(st, u); });
  if (!(r.ok() || r.kind == sdk::Executed::Kind::refused)) {
    log::info("bootstrap: user not created yet",
              {{"code", r.outcome.code}, {"message", r.outcome.message}});
    return false;
  }
  log::info("bootstrap: platform tenant and super admin in place",
            {{"username", name}, {"created", r.kind == sdk::Executed::Kind::appended}});
  return true;
}

void start_bootstrap(const std::shared_ptr<Service>& s, std::shared_ptr<sdk::StoreClient> store) {
  if (s->settings.bootstrap_username.empty()) return;
  s->bootstrapper = std::thread([s, store = std::move(store)] {
    const auto hash =
        auth::hash_password(s->settings.bootstrap_password, s->settings.password_cost);
    // The store accepts identity.* once the registry has cataloged them after
    // our registration: retry, backing off, until then.
    auto backoff = std::chrono::milliseconds(200);
    while (true) {
      try {
        if (bootstrap_once(*s, *store, hash)) return;
      } catch (const std::exception& e) {
        log::warn("bootstrap attempt failed", {{"error", e.what()}});
      }
      std::unique_lock lk(s->mu);
      if (s->cv.wait_for(lk, backoff, [&] { return s->stopping; })) return;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  });
}

void stop_bootstrap(Service& s) {
  {
    std::lock_guard lk(s.mu);
    s.stopping = true;
  }
  s.cv.notify_all();
  if (s.bootstrapper.joinable()) s.bootstrapper.join();
}

}  // namespace

// ---------------------------------------------------------------- public

config::Schema extra_keys() {
  config::Schema k;
  k.optional("identity.bootstrap_username", config::Type::string, "",
             "super admin created in _platform at start when missing (empty: none)")
      .add({"identity.bootstrap_password", config::Type::string, false, std::nullopt,
            "the bootstrap super admin's password (production: at least 12 bytes)", true})
      .optional("identity.password_memory_kib", config::Type::integer,
                std::to_string(kOwaspMemoryKib),
                "Argon2id memory (KiB); production refuses less than 19456")
      .optional("identity.password_ops", config::Type::integer, std::to_string(kOwaspOps),
                "Argon2id passes; production refuses less than 2")
      .optional("identity.verify_slots", config::Type::integer, "4",
                "password hashes/verifications at once (each holds the Argon2id memory)")
      .optional("identity.verify_wait", config::Type::duration, "250ms",
                "how long a login waits for a slot before 503 overloaded")
      .optional("identity.login_user_failures", config::Type::integer, "5",
                "failed logins per tenant/username per window before 429")
      .optional("identity.login_address_failures", config::Type::integer, "20",
                "failed logins per client address per window before 429")
      .optional("identity.login_window", config::Type::duration, "15m",
                "the failed-login counting window")
      .add({"auth.jwt_secret", config::Type::string, false, std::nullopt,
            "HS256 signing key shared with the edge, at least 32 bytes (no default)", true})
      .add({"auth.jwt_previous_secret", config::Type::string, false, std::nullopt,
            "a retired key (invitations signed with it are still accepted)", true})
      .optional("auth.jwt_issuer", config::Type::string, "", "`iss` written into tokens")
      .optional("auth.jwt_audience", config::Type::string, "", "`aud` written into tokens")
      .optional("rabbitmq.management_url", config::Type::string, "",
                "RabbitMQ management API (issue_plugin_credentials), e.g. http://127.0.0.1:15672")
      .optional("rabbitmq.management_user", config::Type::string, "", "management API user")
      .add({"rabbitmq.management_password", config::Type::string, false, std::nullopt,
            "management API password", true});
  return k;
}

Settings settings_from_config(const config::Config& cfg) {
  Settings s;
  const auto mode = cfg.get_string("mode");
  if (mode != "development" && mode != "production") {
    throw config::Error("mode", "must be development or production");
  }
  s.production = mode == "production";
  auto opt = [&](std::string_view key) {
    return cfg.has(key) ? cfg.get_string(key) : std::string();
  };
  const auto secret = opt("auth.jwt_secret");
  if (secret.empty()) {
    throw config::Error("auth.jwt_secret", "required: identity has no default signing key");
  }
  if (secret.size() < 32) throw config::Error("auth.jwt_secret", "must have at least 32 bytes");
  s.jwt.secrets.push_back(secret);
  if (const auto previous = opt("auth.jwt_previous_secret"); !previous.empty()) {
    if (previous.size() < 32) {
      throw config::Error("auth.jwt_previous_secret", "must have at least 32 bytes");
    }
    s.jwt.secrets.push_back(previous);
  }
  s.jwt.issuer = cfg.get_string("auth.jwt_issuer");
  s.jwt.audience = cfg.get_string("auth.jwt_audience");

  const auto memory_kib = cfg.get_int("identity.password_memory_kib");
  const auto ops = cfg.get_int("identity.password_ops");
  if (memory_kib < 8 || ops < 1) {
    throw config::Error("identity.password_memory_kib", "Argon2id needs m >= 8 KiB and t >= 1");
  }
  if (s.production && static_cast<std::size_t>(memory_kib) < kOwaspMemoryKib) {
    throw config::Error("identity.password_memory_kib",
                        "production refuses less than OWASP's 19456 KiB");
  }
  if (s.production && static_cast<std::uint64_t>(ops) < kOwaspOps) {
    throw config::Error("identity.password_ops", "production refuses less than OWASP's t=2");
  }
  s.password_cost.memory_bytes = static_cast<std::size_t>(memory_kib) * 1024;
  s.password_cost.ops = static_cast<std::uint64_t>(ops);

  s.bootstrap_username = cfg.get_string("identity.bootstrap_username");
  s.bootstrap_password = opt("identity.bootstrap_password");
  if (!s.bootstrap_username.empty()) {
    if (!valid_username(s.bootstrap_username)) {
      throw config::Error("identity.bootstrap_username", "1-64 printable characters");
    }
    if (!valid_password(s.bootstrap_password)) {
      throw config::Error("identity.bootstrap_password", "required with a username, 8-256 bytes");
    }
    if (s.production && s.bootstrap_password.size() < 12) {
      throw config::Error("identity.bootstrap_password", "production needs at least 12 bytes");
    }
  }
  const auto slots = cfg.get_int("identity.verify_slots");
  if (slots < 1 || slots > 256) throw config::Error("identity.verify_slots", "1..256");
  s.verify_slots = static_cast<std::size_t>(slots);
  s.verify_wait = cfg.get_duration("identity.verify_wait");
  s.redis_url = opt("redis.url");
  s.user_failure_limit = cfg.get_int("identity.login_user_failures");
  s.address_failure_limit = cfg.get_int("identity.login_address_failures");
  s.failure_window =
      std::chrono::duration_cast<std::chrono::seconds>(cfg.get_duration("identity.login_window"));
  if (s.user_failure_limit < 1 || s.address_failure_limit < 1 || s.failure_window.count() < 1) {
    throw config::Error("identity.login_window", "limits and window must be positive");
  }
  s.rabbitmq_url = opt("rabbitmq.url");
  s.management_url = cfg.get_string("rabbitmq.management_url");
  s.management_user = cfg.get_string("rabbitmq.management_user");
  s.management_password = opt("rabbitmq.management_password");
  return s;
}

sdk::Plugin make_plugin(const config::Config& cfg) {
  auto s = std::make_shared<Service>(settings_from_config(cfg));
  if (s->settings.redis_url.empty()) {
    log::warn("redis.url is not set: failed logins are not counted");
  }
  s->db = sdk::database(cfg, 16);
  s->loader = std::make_unique<sdk::StoreLoader>(s->db);
  s->dummy_hash = auth::hash_password(auth::random_token(16), s->settings.password_cost);

  sdk::Plugin p;
  p.name = "identity";
  p.version = "1.0.0";
  p.instance_id = cfg.get_string("plugin.instance_id");
  for (const auto& t : event_types()) {
    p.event_types.push_back(
        {std::string(t.type), std::string(t.schema), 1, std::string(t.description)});
  }
  add_commands(p, s);
  add_endpoints(p, s);
  p.projections.push_back({read_model(), s->db, s->db, 1});
  p.on_start.push_back(
      [s](std::shared_ptr<sdk::StoreClient> store) { start_bootstrap(s, std::move(store)); });
  p.on_stop.push_back([s] { stop_bootstrap(*s); });
  return p;
}

}  // namespace sb::identity
