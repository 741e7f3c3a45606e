#pragma once
// `Idempotency-Key`: the key becomes the command id (so the events' ids are
// derived from it and a retried command can never apply twice), and the
// first final response is kept so a retry gets that same response back.
//
//   same key, same request   -> the kept response (`Idempotent-Replayed: true`)
//   same key, other request  -> 422 idempotency_key_reused
//   same key, still running  -> 409 idempotency_key_in_use (Retry-After)
//
// Keys are per tenant. Only final outcomes are kept (2xx and 4xx); after a
// 5xx or 504 the outcome of the command is "not applied" (the store refuses
// appends past their deadline) and the key is released so the retry runs.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "switchboard/edge/http.hpp"

namespace sb::edge {

class IdempotencyStore {
 public:
  enum class Outcome { started, in_progress, replay, mismatch };
  struct Begin {
    Outcome outcome = Outcome::started;
    HttpResponse response;  // replay
  };

  virtual ~IdempotencyStore() = default;
  /// Claims `key` for a request with this fingerprint (or reports who holds it).
  virtual Begin begin(const std::string& key, const std::string& fingerprint,
                      std::chrono::milliseconds pending_ttl) = 0;
  /// Keeps the final response for `ttl`.
  virtual void complete(const std::string& key, const std::string& fingerprint,
                        const HttpResponse& response, std::chrono::milliseconds ttl) = 0;
  /// Forgets the key (the command did not apply).
  virtual void release(const std::string& key) = 0;
};

/// The stored form of a kept response (and back): fingerprint, status,
/// content type and body.
std::string encode_kept(const std::string& fingerprint, const HttpResponse& response);
/// nullopt for text that is not a kept response.
std::optional<std::pair<std::string, HttpResponse>> decode_kept(const std::string& text);

/// The key in Redis: "sb:idem:<tenant>:<key>".
std::string idempotency_redis_key(const std::string& tenant, const std::string& key);
/// Whether a client's key is acceptable: 1..200 printable ASCII characters.
bool valid_idempotency_key(const std::string& key);

struct RedisPoolOptions {
  std::string url;
  std::size_t connections = 8;
  std::chrono::milliseconds command_timeout{1000};
  std::chrono::milliseconds acquire_timeout{1000};
};

/// Redis-backed (one Lua script per claim, so two edges agree).
std::unique_ptr<IdempotencyStore> make_redis_idempotency(RedisPoolOptions options);

/// Small synchronous key-value access to Redis for the edge (command status).
class KeyValue {
 public:
  virtual ~KeyValue() = default;
  virtual void put(const std::string& key, const std::string& value,
                   std::chrono::milliseconds ttl) = 0;
  virtual std::optional<std::string> get(const std::string& key) = 0;
};
std::unique_ptr<KeyValue> make_redis_key_value(RedisPoolOptions options);

}  // namespace sb::edge
