#include "switchboard/edge/idempotency.hpp"

#include <stdexcept>

#include "redis_pool.hpp"
#include "switchboard/shared/redis.hpp"

namespace sb::edge {

namespace {

// KEYS[1] key; ARGV[1] pending value; ARGV[2] pending ttl ms.
// Returns "" when claimed, else the value held.
constexpr const char* kClaimScript = R"(
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ''
)";

class RedisIdempotency final : public IdempotencyStore {
 public:
  explicit RedisIdempotency(RedisPoolOptions o) : pool_(std::move(o)) {}

  Begin begin(const std::string& key, const std::string& fingerprint,
              std::chrono::milliseconds pending_ttl) override {
    auto held = pool_.with([&](redis::Client& c) {
      return c.eval(kClaimScript, {key}, {"P" + fingerprint, std::to_string(pending_ttl.count())})
          .throw_if_error()
          .as_string();
    });
    Begin b;
    if (held.empty()) return b;
    if (held.front() == 'P') {
      b.outcome = held.substr(1) == fingerprint ? Outcome::in_progress : Outcome::mismatch;
      return b;
    }
    auto kept = decode_kept(held);
    if (!kept || kept->first != fingerprint) {
      b.outcome = Outcome::mismatch;
      return b;
    }
    b.outcome = Outcome::replay;
    b.response = std::move(kept->second);
    return b;
  }

  void complete(const std::string& key, const std::string& fingerprint,
                const HttpResponse& response, std::chrono::milliseconds ttl) override {
    pool_.with([&](redis::Client& c) {
      c.set(key, encode_kept(fingerprint, response), ttl);
      return 0;
    });
  }

  void release(const std::string& key) override {
    pool_.with([&](redis::Client& c) { return c.del(key); });
  }

 private:
  RedisPool pool_;
};

class RedisKeyValue final : public KeyValue {
 public:
  explicit RedisKeyValue(RedisPoolOptions o) : pool_(std::move(o)) {}
  void put(const std::string& key, const std::string& value,
           std::chrono::milliseconds ttl) override {
    pool_.with([&](redis::Client& c) {
      c.set(key, value, ttl);
      return 0;
    });
  }
  std::optional<std::string> get(const std::string& key) override {
    return pool_.with([&](redis::Client& c) { return c.get(key); });
  }

 private:
  RedisPool pool_;
};

}  // namespace

std::string encode_kept(const std::string& fingerprint, const HttpResponse& response) {
  // "D" fingerprint(64) status(3) <content-type length>:<content-type><body>
  std::string out = "D" + fingerprint;
  auto status = std::to_string(response.status);
  while (status.size() < 3) status.insert(status.begin(), '0');
  out += status;
  out += std::to_string(response.content_type.size()) + ":" + response.content_type;
  out += response.body;
  return out;
}

std::optional<std::pair<std::string, HttpResponse>> decode_kept(const std::string& text) {
  if (text.size() < 1 + 64 + 3 + 2 || text.front() != 'D') return std::nullopt;
  std::string fp = text.substr(1, 64);
  HttpResponse r;
  try {
    r.status = std::stoi(text.substr(65, 3));
    const auto colon = text.find(':', 68);
    if (colon == std::string::npos) return std::nullopt;
    const auto len = std::stoul(text.substr(68, colon - 68));
    if (colon + 1 + len > text.size()) return std::nullopt;
    r.content_type = text.substr(colon + 1, len);
    r.body = text.substr(colon + 1 + len);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return std::make_pair(std::move(fp), std::move(r));
}

std::string idempotency_redis_key(const std::string& tenant, const std::string& key) {
  return "sb:idem:" + tenant + ":" + key;
}

bool valid_idempotency_key(const std::string& key) {
  if (key.empty() || key.size() > 200) return false;
  for (char c : key) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

std::unique_ptr<IdempotencyStore> make_redis_idempotency(RedisPoolOptions options) {
  return std::make_unique<RedisIdempotency>(std::move(options));
}

std::unique_ptr<KeyValue> make_redis_key_value(RedisPoolOptions options) {
  return std::make_unique<RedisKeyValue>(std::move(options));
}

}  // namespace sb::edge
