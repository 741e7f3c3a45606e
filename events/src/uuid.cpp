#include "switchboard/events/uuid.hpp"

#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <mutex>

namespace sb::events {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void random_bytes(void* out, std::size_t size) {
  // sodium_init() is idempotent and thread-safe; it picks the best RNG source.
  static const int kInit = sodium_init();
  (void)kInit;
  randombytes_buf(out, size);
}

void set_version(Uuid::Bytes& b, int version) {
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0F) | (version << 4));
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3F) | 0x80);
}

void put_timestamp(Uuid::Bytes& b, std::uint64_t unix_ms) {
  for (int i = 0; i < 6; ++i) {
    b[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(unix_ms >> (40 - 8 * i));
  }
}

std::uint64_t unix_ms_of(Timestamp at) {
  const auto ms = at.time_since_epoch().count();
  // v7 holds 48 bits of milliseconds since 1970: clamp rather than wrap.
  if (ms < 0) return 0;
  return std::min<std::uint64_t>(static_cast<std::uint64_t>(ms), (std::uint64_t{1} << 48) - 1);
}

}  // namespace

std::optional<Uuid> Uuid::try_parse(std::string_view text) noexcept {
  if (text.size() != 36) return std::nullopt;
  Bytes bytes{};
  std::size_t out = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      ++i;
      continue;
    }
    const int hi = hex_value(text[i]);
    const int lo = hex_value(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes[out++] = static_cast<std::uint8_t>((hi << 4) | lo);
    i += 2;
  }
  return Uuid(bytes);
}

Uuid Uuid::parse(std::string_view text) {
  auto id = try_parse(text);
  if (!id) throw InvalidValue("invalid UUID '" + std::string(text) + "'");
  return *id;
}

std::string Uuid::to_string() const {
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes_.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += kHex[bytes_[i] >> 4];
    out += kHex[bytes_[i] & 0x0F];
  }
  return out;
}

Uuid uuid_v4() {
  Uuid::Bytes b;
  random_bytes(b.data(), b.size());
  set_version(b, 4);
  return Uuid(b);
}

Uuid uuid_v7_at(Timestamp at) {
  Uuid::Bytes b;
  random_bytes(b.data(), b.size());
  put_timestamp(b, unix_ms_of(at));
  set_version(b, 7);
  return Uuid(b);
}

Uuid uuid_v7() {
  // The 12-bit rand_a field is a counter within one millisecond, seeded
  // randomly in its lower half so there is room to count; when it runs out
  // (or the clock steps back) the timestamp is advanced past the last one
  // issued, which keeps ids strictly increasing.
  static std::mutex mutex;
  static std::uint64_t last_ms = 0;
  static std::uint16_t counter = 0;

  Uuid::Bytes b;
  random_bytes(b.data(), b.size());
  const std::uint64_t now = unix_ms_of(now_ms());
  std::uint64_t ms = 0;
  std::uint16_t seq = 0;
  {
    std::lock_guard lock(mutex);
    if (now > last_ms) {
      last_ms = now;
      counter = static_cast<std::uint16_t>(((b[6] << 8) | b[7]) & 0x07FF);
    } else if (++counter > 0x0FFF) {
      ++last_ms;
      counter = 0;
    }
    ms = last_ms;
    seq = counter;
  }
  put_timestamp(b, ms);
  b[6] = static_cast<std::uint8_t>(seq >> 8);
  b[7] = static_cast<std::uint8_t>(seq & 0xFF);
  set_version(b, 7);
  return Uuid(b);
}

std::optional<Timestamp> uuid_v7_time(const Uuid& id) {
  if (id.version() != 7) return std::nullopt;
  std::uint64_t ms = 0;
  for (std::size_t i = 0; i < 6; ++i) ms = (ms << 8) | id.bytes()[i];
  return Timestamp(std::chrono::milliseconds(static_cast<std::int64_t>(ms)));
}

Uuid uuid_v5(const Uuid& name_space, std::string_view name) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) throw std::bad_alloc();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  const bool ok =
      EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
      EVP_DigestUpdate(ctx, name_space.bytes().data(), name_space.bytes().size()) == 1 &&
      EVP_DigestUpdate(ctx, name.data(), name.size()) == 1 &&
      EVP_DigestFinal_ex(ctx, digest, &length) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok || length < 16) throw Error("SHA-1 failed while deriving a UUID");
  Uuid::Bytes b;
  std::copy(digest, digest + 16, b.begin());
  set_version(b, 5);
  return Uuid(b);
}

EventId to_event_id(const Uuid& id) {
  return EventId(id.to_string());
}

EventId new_event_id() {
  return to_event_id(uuid_v7());
}

EventId derive_event_id(const TenantId& tenant, const CommandId& command, std::uint32_t index) {
  // Tenant ids cannot contain '/', and the index is the text after the last
  // '/', so distinct (tenant, command, index) triples give distinct names.
  std::string name;
  name.reserve(tenant.value().size() + command.value().size() + 12);
  name += tenant.value();
  name += '/';
  name += command.value();
  name += '/';
  name += std::to_string(index);
  return to_event_id(uuid_v5(kEventIdNamespace, name));
}

}  // namespace sb::events

std::size_t std::hash<sb::events::Uuid>::operator()(const sb::events::Uuid& u) const noexcept {
  std::uint64_t h = 0;
  for (auto byte : u.bytes()) h = h * 1099511628211ULL ^ byte;
  return static_cast<std::size_t>(h);
}
