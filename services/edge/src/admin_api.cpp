#include "switchboard/edge/admin_api.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

#include "switchboard/broker/consumer.hpp"
#include "switchboard/broker/publisher.hpp"
#include "switchboard/events/push.hpp"
#include "switchboard/events/reader.hpp"
#include "switchboard/events/subscription.hpp"
#include "switchboard/events/subscription_logic.hpp"
#include "switchboard/events/time.hpp"
#include "switchboard/shared/json.hpp"
#include "switchboard/shared/log.hpp"
#include "switchboard/shared/pg.hpp"

namespace sb::edge {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kUndefinedTable = "42P01";

// UTC, millisecond RFC 3339, as the events API prints times.
constexpr const char* kTimeFormat = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

std::string ts_column(const std::string& expr) {
  return "to_char(" + expr + " AT TIME ZONE 'UTC', " + kTimeFormat + ")";
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpError method_not_allowed(std::initializer_list<const char*> allowed) {
  std::string details = "{\"allowed\":[";
  bool first = true;
  for (const auto* m : allowed) {
    if (!first) details += ',';
    first = false;
    json::append_quoted(details, m);
  }
  details += "]}";
  return HttpError(405, "method_not_allowed", "the endpoint does not take this method", details);
}

std::string opt_string(const std::optional<std::string>& v) {
  return v ? json::quoted(*v) : std::string("null");
}

std::string opt_int(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : std::string("null");
}

std::string number(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 3);
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

std::string opt_number(const std::optional<double>& v) {
  return v ? number(*v) : std::string("null");
}

HttpError bad_field(std::string_view field, const std::string& message) {
  return HttpError(400, "invalid_request", message, "{\"field\":" + json::quoted(field) + "}");
}

bool is_not_found(const broker::BrokerError& e) {
  const std::string_view w = e.what();
  return w.find("NOT_FOUND") != std::string_view::npos ||
         w.find("does not exist") != std::string_view::npos;
}

[[noreturn]] void broker_failure(const broker::BrokerError& e, const std::string& group) {
  const std::string details = "{\"group\":" + json::quoted(group) +
                              ",\"queue\":" + json::quoted(events::push_queue_name(group)) + "}";
  if (is_not_found(e)) {
    throw HttpError(404, "group_not_found",
                    "no push group '" + group + "': its queues do not exist on the broker",
                    details);
  }
  log::warn("edge admin: broker call failed", {{"group", group}, {"error", e.what()}});
  throw HttpError(503, "broker_unavailable", "the broker did not complete the call", details);
}

const broker::HeaderValue* header(const broker::Message& m, std::string_view key) {
  auto it = m.headers.find(key);
  return it == m.headers.end() ? nullptr : &it->second;
}

std::optional<std::string> header_text(const broker::Message& m, std::string_view key) {
  if (const auto* s = m.header_string(key)) return *s;
  return std::nullopt;
}

bool header_flag(const broker::Message& m, std::string_view key) {
  const auto* v = header(m, key);
  if (!v) return false;
  if (const auto* b = std::get_if<bool>(v)) return *b;
  if (const auto* i = std::get_if<std::int64_t>(v)) return *i != 0;
  if (const auto* s = std::get_if<std::string>(v)) return *s == "true";
  return false;
}

bool belongs_to(const broker::ParkedMessage& p, const std::string& tenant) {
  auto t = header_text(p.message, events::kTenantHeader);
  return t && *t == tenant;
}

void append_parked(std::string& out, const broker::ParkedMessage& p) {
  const auto& m = p.message;
  out += "{\"message_id\":" + json::quoted(m.message_id);
  out += ",\"type\":" + (m.type.empty() ? std::string("null") : json::quoted(m.type));
  out += ",\"position\":" + opt_int(m.header_int(events::kPositionHeader));
  out += ",\"tenant\":" + opt_string(header_text(m, events::kTenantHeader));
  out += ",\"failures\":" + std::to_string(p.failures);
  out += ",\"error\":" + (p.error.empty() ? std::string("null") : json::quoted(p.error));
  out += ",\"permanent\":";
  out += header_flag(m, broker::kPermanentHeader) ? "true" : "false";
  out += ",\"replay\":";
  out += header_flag(m, events::kReplayHeader) ? "true" : "false";
  out += ",\"failed_at\":[";
  if (auto at = header_text(m, broker::kFailedAtHeader)) {
    // "ms,ms,..." epoch milliseconds -> RFC 3339 times.
    std::size_t start = 0;
    bool first = true;
    while (start < at->size()) {
      auto comma = at->find(',', start);
      if (comma == std::string::npos) comma = at->size();
      std::int64_t ms = 0;
      auto [ptr, ec] = std::from_chars(at->data() + start, at->data() + comma, ms);
      if (ec == std::errc() && ptr == at->data() + comma) {
        if (!first) out += ',';
        first = false;
        out += json::quoted(events::format_rfc3339_ms(std::chrono::system_clock::time_point(
            std::chrono::duration_cast<std::chrono::system_clock::duration>(
                std::chrono::milliseconds(ms)))));
      }
      start = comma + 1;
    }
  }
  out += "],\"origin_queue\":" + opt_string(header_text(m, broker::kOriginQueueHeader));
  rapidjson::Document d;
  d.Parse(m.body.data(), m.body.size());
  if (!d.HasParseError() && d.IsObject()) {
    out += ",\"event\":" + m.body;
  } else {
    out += ",\"body\":" + json::quoted(m.body);
  }
  out += '}';
}

// A bounded executor: a task is taken only when a worker is free for it at
// once (no queue), so at most `workers` replays run and the rest get 503.
class Executor {
 public:
  explicit Executor(std::size_t workers) : workers_(std::max<std::size_t>(1, workers)) {
    for (std::size_t i = 0; i < workers_; ++i) threads_.emplace_back([this] { run(); });
  }
  ~Executor() { stop(); }

  bool try_submit(std::function<void()> f) {
    std::lock_guard lock(mu_);
    if (stopping_ || busy_ + queue_.size() >= workers_) return false;
    queue_.push_back(std::move(f));
    cv_.notify_one();
    return true;
  }

  void stop() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_all();
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      auto f = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      lock.unlock();
      try {
        f();
      } catch (const std::exception& e) {
        log::error("edge admin: background task failed", {{"error", e.what()}});
      }
      lock.lock();
      --busy_;
    }
  }

  std::size_t workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::size_t busy_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Two position samples per subscription, at least rate_min_interval apart:
// the rate is the positions advanced between them per second.
class RateSamples {
 public:
  explicit RateSamples(std::chrono::milliseconds min_interval) : min_interval_(min_interval) {}

  std::optional<double> observe(const std::string& key, std::int64_t position,
                                Clock::time_point now) {
    std::lock_guard lock(mu_);
    auto& s = samples_[key];
    seen_.insert(key);
    if (!s.last || position < s.last->position) {  // first sample, or a reset backwards
      s.prev.reset();
      s.last = Sample{now, position};
    } else if (now - s.last->at >= min_interval_) {
      s.prev = s.last;
      s.last = Sample{now, position};
    }
    if (!s.prev) return std::nullopt;
    const double secs = std::chrono::duration<double>(s.last->at - s.prev->at).count();
    if (secs <= 0) return std::nullopt;
    return static_cast<double>(s.last->position - s.prev->position) / secs;
  }

  /// Forgets the keys not observed since the last sweep (gone subscriptions).
  void sweep(std::string_view prefix) {
    std::lock_guard lock(mu_);
    for (auto it = samples_.begin(); it != samples_.end();) {
      if (it->first.rfind(prefix, 0) == 0 && !seen_.count(it->first)) {
        it = samples_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = seen_.begin(); it != seen_.end();) {
      it = it->rfind(prefix, 0) == 0 ? seen_.erase(it) : std::next(it);
    }
  }

 private:
  struct Sample {
    Clock::time_point at;
    std::int64_t position = 0;
  };
  struct Entry {
    std::optional<Sample> prev;
    std::optional<Sample> last;
  };
  std::chrono::milliseconds min_interval_;
  std::mutex mu_;
  std::map<std::string, Entry> samples_;
  std::set<std::string> seen_;
};

enum class ReplayState { running, done, failed };

const char* to_string(ReplayState s) {
  switch (s) {
    case ReplayState::running:
      return "running";
    case ReplayState::done:
      return "done";
    case ReplayState::failed:
      return "failed";
  }
  return "failed";
}

struct Replay {
  std::string id;
  ReplaySpec spec;
  std::string requested_by;
  std::string started_at;
  Clock::time_point started = Clock::now();

  mutable std::mutex mu;
  ReplayState state = ReplayState::running;
  std::optional<std::int64_t> up_to;  // effective upper bound, once known
  std::optional<std::int64_t> total;  // matching events in range, once counted
  std::int64_t published = 0;
  std::int64_t position = 0;  // replayed up to (inclusive)
  std::optional<std::string> finished_at;
  std::optional<Clock::time_point> finished;
  std::optional<std::string> error;
};

std::string now_text() {
  return events::format_rfc3339_ms(std::chrono::system_clock::now());
}

std::string replay_json(const Replay& r) {
  std::lock_guard lock(r.mu);
  std::string b = "{\"replay_id\":" + json::quoted(r.id);
  b += ",\"status\":" + json::quoted(to_string(r.state));
  b += ",\"group\":" + json::quoted(r.spec.group);
  b += ",\"queue\":" + json::quoted(events::push_queue_name(r.spec.group));
  b += ",\"from_position\":" + std::to_string(r.spec.from_position);
  b += ",\"to_position\":" + opt_int(r.up_to ? r.up_to : r.spec.to_position);
  b += ",\"types\":[";
  for (std::size_t i = 0; i < r.spec.types.size(); ++i) {
    if (i) b += ',';
    json::append_quoted(b, r.spec.types[i]);
  }
  b += "],\"tenant\":" + opt_string(r.spec.tenant);
  b += ",\"position\":" + std::to_string(r.position);
  std::optional<double> fraction;
  if (r.state == ReplayState::done) {
    fraction = 1.0;
  } else if (r.total) {
    fraction =
        *r.total == 0
            ? 1.0
            : std::min(1.0, static_cast<double>(r.published) / static_cast<double>(*r.total));
  }
  b += ",\"progress\":{\"published\":" + std::to_string(r.published) +
       ",\"total\":" + opt_int(r.total) + ",\"fraction\":" + opt_number(fraction) + "}";
  const auto end = r.finished ? *r.finished : Clock::now();
  const double elapsed = std::chrono::duration<double>(end - r.started).count();
  b += ",\"elapsed_s\":" + number(elapsed);
  std::optional<double> eta;
  if (r.state == ReplayState::done) {
    eta = 0;
  } else if (r.state == ReplayState::running && r.total && r.published > 0 && elapsed > 0) {
    const double rate = static_cast<double>(r.published) / elapsed;
    eta = static_cast<double>(std::max<std::int64_t>(0, *r.total - r.published)) / rate;
  }
  b += ",\"eta_s\":" + opt_number(eta);
  b += ",\"requested_by\":" + json::quoted(r.requested_by);
  b += ",\"started_at\":" + json::quoted(r.started_at);
  b += ",\"finished_at\":" + opt_string(r.finished_at);
  b += ",\"error\":" + opt_string(r.error);
  b += ",\"status_url\":" + json::quoted("/api/v1/replays/" + r.id);
  b += '}';
  return b;
}

}  // namespace

// ---------------------------------------------------------------- parsing

void require_operator(const auth::Principal& principal) {
  if (principal.super_admin() || principal.has_role("tenant_admin")) return;
  throw HttpError(403, "forbidden", "operator endpoints need the super_admin or tenant_admin role",
                  "{\"required_roles\":[\"super_admin\",\"tenant_admin\"]}");
}

bool is_admin_path(std::string_view rest) {
  return rest == "subscriptions" || rest.rfind("subscriptions/", 0) == 0 || rest == "projections" ||
         rest == "replays" || rest.rfind("replays/", 0) == 0;
}

std::string parse_group(std::string_view raw) {
  auto decoded = percent_decode(raw);
  if (!decoded || !events::is_valid_subscription_name(*decoded)) {
    throw HttpError(400, "invalid_group",
                    "a push group name is 1..100 of [a-z0-9_.-], starting with a letter or digit",
                    "{\"parameter\":\"group\"}");
  }
  return *decoded;
}

ParkedQuery parse_parked_query(std::string_view query, const AdminApiOptions& options) {
  ParkedQuery q;
  q.limit = options.parked_default_limit;
  if (auto v = query_param(query, "limit")) {
    const auto n = text::parse_int(*v);
    if (!n || *n < 1) {
      throw HttpError(400, "invalid_request", "query parameter `limit` must be an integer >= 1",
                      "{\"parameter\":\"limit\"}");
    }
    q.limit = std::min<std::size_t>(static_cast<std::size_t>(*n), options.parked_max_limit);
  }
  if (auto id = query_param(query, "message_id")) {
    const bool printable = std::all_of(id->begin(), id->end(), [](char c) {
      return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
    });
    if (id->empty() || id->size() > 200 || !printable) {
      throw HttpError(400, "invalid_request",
                      "query parameter `message_id` must be 1..200 printable characters",
                      "{\"parameter\":\"message_id\"}");
    }
    q.message_id = *id;
  }
  return q;
}

std::optional<ResetSpec> parse_reset_body(std::string_view body, const Operator& caller) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("subscription")) return std::nullopt;
  if (!caller.super_admin) {
    throw HttpError(403, "forbidden",
                    "only a super admin resets a checkpointed subscription (it spans tenants)");
  }
  for (const auto& m : d.GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    if (name != "subscription" && name != "position") {
      throw bad_field(name, "unknown field `" + std::string(name) + "`");
    }
  }
  ResetSpec r;
  const auto& sub = d["subscription"];
  if (!sub.IsString() || !events::is_valid_subscription_name(sub.GetString())) {
    throw bad_field("subscription", "`subscription` must be a subscription name");
  }
  r.subscription = sub.GetString();
  if (!d.HasMember("position") || !d["position"].IsInt64() || d["position"].GetInt64() < 0) {
    throw bad_field("position", "`position` must be an integer >= 0");
  }
  r.position = d["position"].GetInt64();
  return r;
}

ReplaySpec parse_replay_body(std::string_view body, const Operator& caller) {
  rapidjson::Document d;
  d.Parse(body.data(), body.size());
  if (d.HasParseError()) {
    throw HttpError(400, "malformed_json", "the body is not JSON",
                    "{\"offset\":" + std::to_string(d.GetErrorOffset()) + "}");
  }
  if (!d.IsObject()) throw HttpError(400, "invalid_request", "the body must be a JSON object");
  static const std::set<std::string_view> kKnown = {"group", "from_position", "to_position",
                                                    "types", "tenant"};
  for (const auto& m : d.GetObject()) {
    const std::string_view name(m.name.GetString(), m.name.GetStringLength());
    if (!kKnown.count(name)) throw bad_field(name, "unknown field `" + std::string(name) + "`");
  }
  ReplaySpec spec;
  const auto* group = json::find(d, "group");
  if (!group || !group->IsString()) throw bad_field("group", "`group` (a string) is required");
  spec.group.assign(group->GetString(), group->GetStringLength());
  if (!events::is_valid_subscription_name(spec.group)) {
    throw bad_field("group",
                    "`group` must be 1..100 of [a-z0-9_.-], starting with a letter or digit");
  }
  const auto* from = json::find(d, "from_position");
  if (!from || !from->IsInt64() || from->GetInt64() < 1) {
    throw bad_field("from_position", "`from_position` (an integer >= 1) is required");
  }
  spec.from_position = from->GetInt64();
  if (const auto* to = json::find(d, "to_position"); to && !to->IsNull()) {
    if (!to->IsInt64() || to->GetInt64() < spec.from_position) {
      throw bad_field("to_position", "`to_position` must be an integer >= from_position");
    }
    spec.to_position = to->GetInt64();
  }
  if (const auto* types = json::find(d, "types"); types && !types->IsNull()) {
    if (!types->IsArray()) throw bad_field("types", "`types` must be an array of type patterns");
    if (types->Size() > 64) throw bad_field("types", "`types` holds at most 64 patterns");
    for (rapidjson::SizeType i = 0; i < types->Size(); ++i) {
      const auto& t = (*types)[i];
      const std::string field = "types/" + std::to_string(i);
      if (!t.IsString()) throw bad_field(field, "`types` must be an array of strings");
      std::string pattern(t.GetString(), t.GetStringLength());
      try {
        events::validate_type_pattern(pattern);
      } catch (const std::exception& e) {
        throw bad_field(field, e.what());
      }
      spec.types.push_back(std::move(pattern));
    }
  }
  std::optional<std::string> tenant;
  if (const auto* t = json::find(d, "tenant"); t && !t->IsNull()) {
    if (!t->IsString()) throw bad_field("tenant", "`tenant` must be a string");
    tenant.emplace(t->GetString(), t->GetStringLength());
    if (!events::TenantId::is_valid(*tenant)) throw bad_field("tenant", "`tenant` is not valid");
  }
  if (caller.tenant) {
    if (tenant && *tenant != *caller.tenant) {
      throw HttpError(403, "forbidden", "this caller may replay only its own tenant's events",
                      "{\"field\":\"tenant\"}");
    }
    spec.tenant = caller.tenant;  // forced
  } else {
    spec.tenant = std::move(tenant);
  }
  return spec;
}

std::string parse_replay_id(std::string_view raw) {
  const bool ok = raw.size() == 32 && std::all_of(raw.begin(), raw.end(), [](char c) {
                    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                  });
  if (!ok) throw HttpError(404, "replay_not_found", "no such replay");
  return std::string(raw);
}

// ---------------------------------------------------------------- the API

class AdminApi::Impl {
 public:
  Impl(std::shared_ptr<pg::Pool> pool, broker::ConnectionOptions broker, AdminApiOptions options)
      : pool_(std::move(pool)),
        broker_(std::move(broker)),
        options_(options),
        rates_(options.rate_min_interval),
        executor_(options.max_replays) {}

  ~Impl() { drain(); }

  void drain() {
    stopping_ = true;
    executor_.stop();
  }

  // ------------------------------------------------------------ subscriptions
  HttpResponse subscriptions(const Operator& caller) {
    auto lease = pool_->acquire();
    const std::string sql =
        "SELECT c.name, c.partition, c.partitions, c.position, c.state, c.last_error, " +
        ts_column("c.last_error_at") + ", c.failed_position, c.owner, " +
        ts_column("c.updated_at") +
        ", h.head, "
        "(SELECT greatest(0, (extract(epoch FROM (now() - e.recorded_at)) * 1000)::bigint) "
        "   FROM events e WHERE e.position > c.position ORDER BY e.position LIMIT 1), "
        "(SELECT e.tenant FROM events e WHERE e.position = c.failed_position) "
        "FROM subscription_checkpoints c "
        "CROSS JOIN (SELECT coalesce(max(position), 0) AS head FROM events) h "
        "ORDER BY c.name, c.partition";
    pg::Result rows;
    bool have_table = true;
    try {
      rows = lease->exec(pg::Sql::trusted(sql));
    } catch (const pg::QueryError& e) {
      if (e.sqlstate() != kUndefinedTable) throw;
      have_table = false;
    }
    const auto now = Clock::now();
    std::int64_t head = 0;
    std::string list = "[";
    std::size_t i = 0;
    bool first_sub = true;
    while (i < rows.size()) {
      const std::string name(rows[i][0].text());
      std::size_t j = i;
      std::string parts = "[";
      std::int64_t min_position = -1;
      std::int64_t max_lag = 0;
      std::int64_t max_lag_ms = 0;
      std::optional<double> rate_sum;
      bool parked = false;
      int partitions = 0;
      for (; j < rows.size() && rows[j][0].text() == name; ++j) {
        const auto r = rows[j];
        const int partition = r[1].get<int>();
        partitions = r[2].get<int>();
        const auto position = r[3].get<std::int64_t>();
        const std::string state(r[4].text());
        head = r[10].get<std::int64_t>();
        const auto lag = std::max<std::int64_t>(0, head - position);
        const auto lag_ms = lag > 0 ? r[11].get_optional<std::int64_t>().value_or(0) : 0;
        auto rate = rates_.observe("sub:" + name + "/" + std::to_string(partition), position, now);
        if (rate) rate_sum = rate_sum.value_or(0) + *rate;
        if (state == "parked") parked = true;
        min_position = min_position < 0 ? position : std::min(min_position, position);
        max_lag = std::max(max_lag, lag);
        max_lag_ms = std::max(max_lag_ms, lag_ms);
        // The error text may quote the failing event: a scoped caller sees
        // it only when that event is its tenant's.
        auto error = r[5].get_optional<std::string>();
        const auto failed_tenant = r[12].get_optional<std::string>();
        const bool hidden = error && caller.tenant && failed_tenant != caller.tenant;
        if (parts.size() > 1) parts += ',';
        parts += "{\"partition\":" + std::to_string(partition);
        parts += ",\"position\":" + std::to_string(position);
        parts += ",\"state\":" + json::quoted(state);
        parts += ",\"lag_events\":" + std::to_string(lag);
        parts += ",\"lag_ms\":" + std::to_string(lag_ms);
        parts += ",\"rate\":" + opt_number(rate);
        parts += ",\"last_error\":" + (hidden ? std::string("null") : opt_string(error));
        parts += ",\"last_error_hidden\":";
        parts += hidden ? "true" : "false";
        parts += ",\"last_error_at\":" + opt_string(r[6].get_optional<std::string>());
        parts += ",\"failed_position\":" + opt_int(r[7].get_optional<std::int64_t>());
        parts += ",\"owner\":" + opt_string(r[8].get_optional<std::string>());
        parts += ",\"updated_at\":" + opt_string(r[9].get_optional<std::string>());
        parts += '}';
      }
      parts += ']';
      if (!first_sub) list += ',';
      first_sub = false;
      list += "{\"name\":" + json::quoted(name);
      list += ",\"kind\":\"checkpointed\"";
      list += ",\"partitions\":" + std::to_string(partitions);
      list += ",\"state\":";
      list += parked ? "\"parked\"" : "\"running\"";
      list += ",\"position\":" + std::to_string(std::max<std::int64_t>(0, min_position));
      list += ",\"lag_events\":" + std::to_string(max_lag);
      list += ",\"lag_ms\":" + std::to_string(max_lag_ms);
      list += ",\"rate\":" + opt_number(rate_sum);
      list += ",\"by_partition\":" + parts + "}";
      i = j;
    }
    list += ']';
    if (have_table) rates_.sweep("sub:");
    if (rows.empty()) {
      head =
          lease->exec("SELECT coalesce(max(position), 0) FROM events").one()[0].get<std::int64_t>();
    }
    std::string body = "{\"head\":" + std::to_string(head) + ",\"subscriptions\":" + list;
    body += ",\"push_groups\":" + push_groups(*lease);
    body +=
        ",\"notes\":{\"rate\":\"positions per second between the two samples this edge keeps "
        "per partition (taken at least " +
        std::to_string(options_.rate_min_interval.count()) +
        " ms apart, on requests); null until two samples exist\","
        "\"push_groups\":\"from the database: groups with a transactional handler "
        "(processed_events) or recorded overflow; AMQP cannot list queues, so other groups "
        "are not listed\"";
    if (!have_table) body += ",\"subscription_checkpoints\":\"no such table in this database\"";
    body += "}}";
    return json_response(200, std::move(body));
  }

  std::string push_groups(pg::Connection& c) {
    std::map<std::string, std::int64_t> groups;
    try {
      auto rows = c.exec(
          "WITH RECURSIVE g(name) AS ("
          "  (SELECT group_name FROM processed_events ORDER BY group_name LIMIT 1)"
          "  UNION ALL"
          "  SELECT (SELECT p.group_name FROM processed_events p WHERE p.group_name > g.name"
          "          ORDER BY p.group_name LIMIT 1) FROM g WHERE g.name IS NOT NULL)"
          "SELECT name FROM g WHERE name IS NOT NULL LIMIT 1000");
      for (const auto r : rows) groups.emplace(std::string(r[0].text()), 0);
      rows = c.exec(
          "SELECT group_name, count(*) FILTER (WHERE handled_at IS NULL) FROM push_overflow "
          "GROUP BY group_name ORDER BY group_name LIMIT 1000");
      for (const auto r : rows) groups[std::string(r[0].text())] = r[1].get<std::int64_t>();
    } catch (const pg::QueryError& e) {
      if (e.sqlstate() != kUndefinedTable) throw;
    }
    std::string out = "[";
    for (const auto& [g, pending] : groups) {
      if (out.size() > 1) out += ',';
      out += "{\"group\":" + json::quoted(g) +
             ",\"queue\":" + json::quoted(events::push_queue_name(g)) + ",\"parked_queue\":" +
             json::quoted(broker::parked_queue_name(events::push_queue_name(g))) +
             ",\"overflow_pending\":" + std::to_string(pending) + "}";
    }
    out += ']';
    return out;
  }

  // ------------------------------------------------------------ projections
  HttpResponse projections(const Operator& caller) {
    auto lease = pool_->acquire();
    auto side = [](const char* gen) {
      return std::string(
                 "LEFT JOIN LATERAL (SELECT min(c.position) AS position, count(*) AS n, "
                 "bool_or(c.state = 'parked') AS parked, max(c.last_error) AS last_error, "
                 "max(c.failed_position) AS failed_position FROM subscription_checkpoints c "
                 "WHERE c.name = 'projection.' || g.name || '.g' || g.") +
             gen + ") ";
    };
    const std::string sql =
        "SELECT g.name, g.serving_generation, g.serving_partitions, g.building_generation, "
        "g.building_partitions, " +
        ts_column("g.rebuild_started_at") + ", " + ts_column("g.swapped_at") + ", " +
        ts_column("g.updated_at") +
        ", h.head, s.position, s.n, s.parked, s.last_error, "
        "(SELECT e.tenant FROM events e WHERE e.position = s.failed_position), "
        "(SELECT greatest(0, (extract(epoch FROM (now() - e.recorded_at)) * 1000)::bigint) "
        "   FROM events e WHERE e.position > s.position ORDER BY e.position LIMIT 1), "
        "b.position, b.n "
        "FROM projection_generations g "
        "CROSS JOIN (SELECT coalesce(max(position), 0) AS head FROM events) h " +
        side("serving_generation") + "s ON true " + side("building_generation") +
        "b ON true ORDER BY g.name";
    pg::Result rows;
    bool have_table = true;
    try {
      rows = lease->exec(pg::Sql::trusted(sql));
    } catch (const pg::QueryError& e) {
      if (e.sqlstate() != kUndefinedTable) throw;
      have_table = false;
    }
    const auto now = Clock::now();
    std::string list = "[";
    for (const auto r : rows) {
      const std::string name(r[0].text());
      const int serving = r[1].get<int>();
      const auto head = r[8].get<std::int64_t>();
      const auto s_n = r[10].get<std::int64_t>();
      const auto s_position = r[9].get_optional<std::int64_t>();
      if (list.size() > 1) list += ',';
      list += "{\"name\":" + json::quoted(name);
      list += ",\"serving\":{\"generation\":" + std::to_string(serving);
      list += ",\"partitions\":" + std::to_string(r[2].get<int>());
      list += ",\"subscription\":" +
              json::quoted("projection." + name + ".g" + std::to_string(serving));
      list += ",\"checkpoints\":" + std::to_string(s_n);
      if (s_position) {
        const auto lag = std::max<std::int64_t>(0, head - *s_position);
        const auto rate =
            rates_.observe("proj:" + name + ".g" + std::to_string(serving), *s_position, now);
        auto error = r[12].get_optional<std::string>();
        const auto failed_tenant = r[13].get_optional<std::string>();
        const bool hidden = error && caller.tenant && failed_tenant != caller.tenant;
        list += ",\"state\":";
        list += r[11].get<bool>() ? "\"parked\"" : "\"running\"";
        list += ",\"position\":" + std::to_string(*s_position);
        list += ",\"lag_events\":" + std::to_string(lag);
        list += ",\"lag_ms\":" +
                std::to_string(lag > 0 ? r[14].get_optional<std::int64_t>().value_or(0) : 0);
        list += ",\"rate\":" + opt_number(rate);
        list += ",\"last_error\":" + (hidden ? std::string("null") : opt_string(error));
        list += ",\"last_error_hidden\":";
        list += hidden ? "true" : "false";
      } else {
        // No checkpoint rows here: the projection keeps them in another database.
        list +=
            ",\"state\":\"unknown\",\"position\":null,\"lag_events\":null,\"lag_ms\":null,"
            "\"rate\":null,\"last_error\":null,\"last_error_hidden\":false";
      }
      list += '}';
      const auto building = r[3].get_optional<int>();
      if (building) {
        const auto b_position = r[15].get_optional<std::int64_t>();
        list += ",\"rebuilding\":{\"generation\":" + std::to_string(*building);
        list += ",\"partitions\":" + opt_int(r[4].get_optional<std::int64_t>());
        list += ",\"subscription\":" +
                json::quoted("projection." + name + ".g" + std::to_string(*building));
        list += ",\"position\":" + opt_int(b_position);
        std::optional<double> progress;
        std::optional<double> rate;
        std::optional<double> eta;
        if (b_position) {
          progress =
              head == 0
                  ? 1.0
                  : std::min(1.0, static_cast<double>(*b_position) / static_cast<double>(head));
          rate =
              rates_.observe("proj:" + name + ".g" + std::to_string(*building), *b_position, now);
          if (rate && *rate > 0) {
            eta = static_cast<double>(std::max<std::int64_t>(0, head - *b_position)) / *rate;
          }
        }
        list +=
            ",\"lag_events\":" +
            opt_int(b_position
                        ? std::optional<std::int64_t>(std::max<std::int64_t>(0, head - *b_position))
                        : std::nullopt);
        list += ",\"progress\":" + opt_number(progress);
        list += ",\"rate\":" + opt_number(rate);
        list += ",\"eta_s\":" + opt_number(eta);
        list += ",\"started_at\":" + opt_string(r[5].get_optional<std::string>());
        list += '}';
      } else {
        list += ",\"rebuilding\":null";
      }
      list += ",\"swapped_at\":" + opt_string(r[6].get_optional<std::string>());
      list += ",\"updated_at\":" + opt_string(r[7].get_optional<std::string>());
      list += ",\"head\":" + std::to_string(head);
      list += '}';
    }
    list += ']';
    if (have_table) rates_.sweep("proj:");
    std::string body = "{\"projections\":" + list;
    if (!have_table) body += ",\"notes\":{\"projection_generations\":\"no such table\"}";
    body += '}';
    return json_response(200, std::move(body));
  }

  // ------------------------------------------------------------ parked
  broker::ParkedQueue parked_queue(const std::string& group) const {
    auto c = broker_;
    c.name += "-admin";
    return broker::ParkedQueue(c, events::push_queue_name(group));
  }

  std::string parked_name(const std::string& group) const {
    return broker::parked_queue_name(events::push_queue_name(group));
  }

  HttpResponse parked_list(const HttpRequest& req, const Operator& caller,
                           const std::string& group) {
    const auto q = parse_parked_query(req.query, options_);
    std::vector<broker::ParkedMessage> got;
    try {
      got = parked_queue(group).list(caller.tenant ? std::max(q.limit, options_.parked_scan)
                                                   : q.limit);
    } catch (const broker::BrokerError& e) {
      broker_failure(e, group);
    }
    std::string body = "{\"group\":" + json::quoted(group) +
                       ",\"queue\":" + json::quoted(parked_name(group)) + ",\"messages\":[";
    std::size_t n = 0;
    for (const auto& p : got) {
      if (caller.tenant && !belongs_to(p, *caller.tenant)) continue;
      if (q.message_id && p.message.message_id != *q.message_id) continue;
      if (n == q.limit) break;
      if (n++) body += ',';
      append_parked(body, p);
    }
    body += "],\"count\":" + std::to_string(n) + ",\"limit\":" + std::to_string(q.limit);
    body += ",\"truncated\":";
    body += got.size() >= (caller.tenant ? std::max(q.limit, options_.parked_scan) : q.limit)
                ? "true"
                : "false";
    body += '}';
    return json_response(200, std::move(body));
  }

  // A scoped caller acts on one message of its tenant only.
  void check_scoped(const Operator& caller, const std::string& group, const ParkedQuery& q,
                    const broker::ParkedQueue& queue) const {
    if (!caller.tenant) return;
    if (!q.message_id) {
      throw HttpError(403, "forbidden",
                      "a tenant-scoped operator acts on its own parked messages one at a time: "
                      "name one with ?message_id=",
                      "{\"parameter\":\"message_id\"}");
    }
    std::vector<broker::ParkedMessage> got;
    try {
      got = queue.list(options_.parked_scan);
    } catch (const broker::BrokerError& e) {
      broker_failure(e, group);
    }
    const bool mine = std::any_of(got.begin(), got.end(), [&](const broker::ParkedMessage& p) {
      return p.message.message_id == *q.message_id && belongs_to(p, *caller.tenant);
    });
    if (!mine) not_found(group, *q.message_id);
  }

  bool parked_untrusted(const broker::ParkedQueue& queue, const std::string& id) const {
    try {
      const auto got = queue.list(options_.parked_scan);
      return std::any_of(got.begin(), got.end(), [&](const broker::ParkedMessage& p) {
        return p.message.message_id == id && broker::ParkedQueue::untrusted(p.message);
      });
    } catch (const broker::BrokerError&) {
      return false;
    }
  }

  [[noreturn]] static void not_found(const std::string& group, const std::string& id) {
    throw HttpError(
        404, "parked_message_not_found", "no such parked message in this group",
        "{\"group\":" + json::quoted(group) + ",\"message_id\":" + json::quoted(id) + "}");
  }

  HttpResponse parked_change(const HttpRequest& req, const Operator& caller,
                             const std::string& group, bool retry) {
    const auto q = parse_parked_query(req.query, options_);
    const auto queue = parked_queue(group);
    check_scoped(caller, group, q, queue);
    std::size_t n = 0;
    try {
      n = retry ? queue.requeue(q.message_id) : queue.drop(q.message_id);
    } catch (const broker::BrokerError& e) {
      broker_failure(e, group);
    }
    if (q.message_id && n == 0) {
      if (retry && parked_untrusted(queue, *q.message_id)) {
        throw HttpError(409, "untrusted_publisher",
                        "this message was parked because its broker publisher is not trusted; "
                        "it is never requeued (drop it)",
                        "{\"group\":" + json::quoted(group) +
                            ",\"message_id\":" + json::quoted(*q.message_id) + "}");
      }
      not_found(group, *q.message_id);
    }
    log::info(
        retry ? "edge admin: parked messages requeued" : "edge admin: parked messages dropped",
        {{"group", group},
         {"count", static_cast<std::int64_t>(n)},
         {"actor", caller.actor},
         {"message_id", q.message_id.value_or("*")}});
    std::string body = "{\"group\":" + json::quoted(group) + ",\"" +
                       (retry ? "requeued" : "dropped") + "\":" + std::to_string(n) +
                       ",\"message_id\":" + opt_string(q.message_id) + "}";
    return json_response(200, std::move(body));
  }

  // ------------------------------------------------------------ replays
  HttpResponse start_replay(const HttpRequest& req, const Operator& caller) {
    if (auto reset = parse_reset_body(req.body, caller)) return reset_subscription(*reset);
    auto spec = parse_replay_body(req.body, caller);
    // The group must exist: its parked queue is declared with it (a replay is
    // published mandatory and would fail at the end otherwise).
    try {
      (void)parked_queue(spec.group).list(1);
    } catch (const broker::BrokerError& e) {
      broker_failure(e, spec.group);
    }
    auto r = std::make_shared<Replay>();
    r->id = broker::new_id();
    r->spec = std::move(spec);
    r->requested_by = caller.actor;
    r->started_at = now_text();
    {
      std::lock_guard lock(mu_);
      if (stopping_) throw HttpError(503, "unavailable", "the edge is stopping");
    }
    if (!executor_.try_submit([this, r] { run(*r); })) {
      auto e = HttpError(503, "replay_capacity",
                         "too many replays are running on this edge; retry later",
                         "{\"max_replays\":" + std::to_string(options_.max_replays) + "}");
      auto res = e.response();
      res.set_header("retry-after", "5");
      return res;
    }
    remember(r);
    log::info("edge admin: replay started", {{"replay_id", r->id},
                                             {"group", r->spec.group},
                                             {"actor", caller.actor},
                                             {"tenant", r->spec.tenant.value_or("*")}});
    auto res = json_response(202, "{\"replay_id\":" + json::quoted(r->id) + ",\"status_url\":" +
                                      json::quoted("/api/v1/replays/" + r->id) + "}");
    res.set_header("location", "/api/v1/replays/" + r->id);
    return res;
  }

  void remember(const std::shared_ptr<Replay>& r) {
    std::lock_guard lock(mu_);
    replays_[r->id] = r;
    order_.push_back(r->id);
    // Forget the oldest finished ones beyond the bound (running ones stay).
    while (order_.size() > options_.kept_replays) {
      bool dropped = false;
      for (auto it = order_.begin(); it != order_.end(); ++it) {
        auto found = replays_.find(*it);
        bool finished = true;
        if (found != replays_.end()) {
          std::lock_guard rl(found->second->mu);
          finished = found->second->state != ReplayState::running;
        }
        if (finished) {
          if (found != replays_.end()) replays_.erase(found);
          order_.erase(it);
          dropped = true;
          break;
        }
      }
      if (!dropped) break;
    }
  }

  // Sets every partition's checkpoint; the owners notice within their poll
  // interval (events::reset_checkpoint). Effects already applied are not
  // undone: a projection that must start clean is rebuilt instead.
  HttpResponse reset_subscription(const ResetSpec& spec) {
    std::vector<events::CheckpointRow> rows;
    {
      auto lease = pool_->acquire();
      auto tx = lease->begin();
      rows = events::read_checkpoints(tx, spec.subscription);
    }
    if (rows.empty()) {
      throw HttpError(404, "subscription_not_found", "no checkpointed subscription of that name",
                      "{\"subscription\":" + json::quoted(spec.subscription) + "}");
    }
    int reset = 0;
    for (const auto& row : rows) {
      if (events::reset_checkpoint(*pool_, spec.subscription, row.partition.index,
                                   events::Position(spec.position))) {
        ++reset;
      }
    }
    log::info(
        "subscription checkpoint reset",
        {{"subscription", spec.subscription}, {"position", spec.position}, {"partitions", reset}});
    HttpResponse r;
    r.body = "{\"subscription\":" + json::quoted(spec.subscription) +
             ",\"position\":" + std::to_string(spec.position) +
             ",\"partitions\":" + std::to_string(reset) +
             ",\"note\":\"each owner resumes from here within its poll interval\"}";
    return r;
  }

  HttpResponse replay_status(const Operator& caller, const std::string& id) {
    std::shared_ptr<Replay> r;
    {
      std::lock_guard lock(mu_);
      auto it = replays_.find(id);
      if (it != replays_.end()) r = it->second;
    }
    // Another tenant's replay reads as absent.
    if (!r || (caller.tenant && r->spec.tenant != caller.tenant)) {
      throw HttpError(
          404, "replay_not_found",
          "no such replay on this edge (replays are tracked by the edge that runs them)",
          "{\"replay_id\":" + json::quoted(id) + "}");
    }
    return json_response(200, replay_json(*r));
  }

  void run(Replay& r) {
    try {
      events::Filter filter;
      filter.types = r.spec.types;
      if (r.spec.tenant) filter.tenant = events::TenantId(*r.spec.tenant);
      events::EventReader reader(*pool_);
      const auto head = reader.head().value();
      const auto up_to = r.spec.to_position ? std::min(*r.spec.to_position, head) : head;
      std::int64_t after = r.spec.from_position - 1;
      std::int64_t total = 0;
      if (after < up_to) {
        pg::Params params{after, up_to};
        const auto cond = events::filter_sql(filter, params);
        auto lease = pool_->acquire();
        total =
            lease
                ->exec(pg::Sql::trusted(
                           "SELECT count(*) FROM events WHERE position > $1 AND position <= $2" +
                           cond),
                       params)
                .one()[0]
                .get<std::int64_t>();
      }
      {
        std::lock_guard lock(r.mu);
        r.up_to = up_to;
        r.total = total;
        r.position = std::max<std::int64_t>(0, std::min(after, up_to));
      }
      std::unique_ptr<broker::Publisher> publisher;
      while (after < up_to) {
        if (stopping_) throw std::runtime_error("cancelled: the edge is stopping");
        if (!publisher) {
          broker::PublisherOptions po;
          po.connection = broker_;
          po.connection.name += "-replay";
          publisher = std::make_unique<broker::Publisher>(std::move(po));
        }
        const auto step_to =
            std::min(up_to, after + std::max<std::int64_t>(1, options_.replay_step));
        events::ReplayRequest request;
        request.group = r.spec.group;
        request.after = events::Position(after);
        request.up_to = events::Position(step_to);
        request.filter = filter;
        request.page_size = options_.replay_page;
        const auto result =
            events::replay_to_group(reader, *publisher, request, options_.replay_step_timeout);
        after = step_to;
        std::lock_guard lock(r.mu);
        r.published += static_cast<std::int64_t>(result.published);
        r.position = step_to;
      }
      std::lock_guard lock(r.mu);
      r.state = ReplayState::done;
      r.finished = Clock::now();
      r.finished_at = now_text();
      log::info("edge admin: replay done",
                {{"replay_id", r.id}, {"group", r.spec.group}, {"published", r.published}});
    } catch (const std::exception& e) {
      std::lock_guard lock(r.mu);
      r.state = ReplayState::failed;
      r.error = e.what();
      r.finished = Clock::now();
      r.finished_at = now_text();
      log::warn("edge admin: replay failed",
                {{"replay_id", r.id}, {"group", r.spec.group}, {"error", e.what()}});
    }
  }

  const AdminApiOptions& options() const { return options_; }

 private:
  std::shared_ptr<pg::Pool> pool_;
  broker::ConnectionOptions broker_;
  AdminApiOptions options_;
  RateSamples rates_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Replay>> replays_;
  std::deque<std::string> order_;
  Executor executor_;  // last: its threads use everything above
};

AdminApi::AdminApi(std::shared_ptr<pg::Pool> pool, broker::ConnectionOptions broker,
                   AdminApiOptions options)
    : impl_(std::make_unique<Impl>(std::move(pool), std::move(broker), options)) {}

AdminApi::~AdminApi() = default;

void AdminApi::drain() {
  impl_->drain();
}

HttpResponse AdminApi::subscriptions(const Operator& caller) {
  return impl_->subscriptions(caller);
}
HttpResponse AdminApi::projections(const Operator& caller) {
  return impl_->projections(caller);
}
HttpResponse AdminApi::parked_list(const HttpRequest& req, const Operator& caller,
                                   const std::string& group) {
  return impl_->parked_list(req, caller, group);
}
HttpResponse AdminApi::parked_retry(const HttpRequest& req, const Operator& caller,
                                    const std::string& group) {
  return impl_->parked_change(req, caller, group, true);
}
HttpResponse AdminApi::parked_drop(const HttpRequest& req, const Operator& caller,
                                   const std::string& group) {
  return impl_->parked_change(req, caller, group, false);
}
HttpResponse AdminApi::start_replay(const HttpRequest& req, const Operator& caller) {
  return impl_->start_replay(req, caller);
}
HttpResponse AdminApi::replay_status(const Operator& caller, const std::string& id) {
  return impl_->replay_status(caller, id);
}

HttpResponse AdminApi::handle(const HttpRequest& req, std::string_view rest,
                              const Operator& caller) {
  const auto& m = req.method;
  if (rest == "subscriptions") {
    if (m != "GET") throw method_not_allowed({"GET"});
    return subscriptions(caller);
  }
  if (rest == "projections") {
    if (m != "GET") throw method_not_allowed({"GET"});
    return projections(caller);
  }
  if (rest == "replays") {
    if (m != "POST") throw method_not_allowed({"POST"});
    return start_replay(req, caller);
  }
  constexpr std::string_view kReplays = "replays/";
  if (rest.rfind(kReplays, 0) == 0) {
    const auto id = rest.substr(kReplays.size());
    if (id.find('/') != std::string_view::npos) {
      throw HttpError(404, "unknown_route", "no such platform endpoint");
    }
    if (m != "GET") throw method_not_allowed({"GET"});
    return replay_status(caller, parse_replay_id(id));
  }
  constexpr std::string_view kSubs = "subscriptions/";
  if (rest.rfind(kSubs, 0) == 0) {
    const auto tail = rest.substr(kSubs.size());
    const auto slash = tail.find('/');
    if (slash != std::string_view::npos) {
      const auto sub = tail.substr(slash + 1);
      if (sub == "parked") {
        if (m != "GET" && m != "DELETE") throw method_not_allowed({"GET", "DELETE"});
        const auto group = parse_group(tail.substr(0, slash));
        return m == "GET" ? parked_list(req, caller, group) : parked_drop(req, caller, group);
      }
      if (sub == "parked/retry") {
        if (m != "POST") throw method_not_allowed({"POST"});
        return parked_retry(req, caller, parse_group(tail.substr(0, slash)));
      }
    }
  }
  throw HttpError(404, "unknown_route", "no such platform endpoint");
}

}  // namespace sb::edge
