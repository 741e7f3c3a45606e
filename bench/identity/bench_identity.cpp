// Login latency through the edge with production Argon2id parameters
// (m = 19 MiB, t = 2), beside baselines measured in the same run: the hash
// cost alone, and bare sb::auth::verify_password of the same hash in a loop.
//
//   bench_identity <rabbitmq_url> <postgres_url> <redis_url> --build <dir>
//                  [--logins N] [--verifies N] [--hashes N] [--keep]
// (scripts/bench.sh starts throwaway servers and passes the URLs.)
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "procs.hpp"
#include "switchboard/shared/auth.hpp"

using namespace sb;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kSecret = "bench-identity-signing-key-0123456789abcdef";
const std::string kPassword = "bench-password-0123";

struct Figures {
  double p50_ms = 0;
  double p99_ms = 0;
  double mean_ms = 0;
  std::size_t n = 0;
};

Figures figures(std::vector<double> ms) {
  Figures f;
  f.n = ms.size();
  if (ms.empty()) return f;
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) {
    return ms[std::min(ms.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(ms.size())))];
  };
  f.p50_ms = at(0.50);
  f.p99_ms = at(0.99);
  double sum = 0;
  for (double v : ms) sum += v;
  f.mean_ms = sum / static_cast<double>(ms.size());
  return f;
}

void print(const char* what, const Figures& f) {
  std::printf("  %-44s n=%-5zu p50 %8.2f ms   p99 %8.2f ms   mean %8.2f ms\n", what, f.n, f.p50_ms,
              f.p99_ms, f.mean_ms);
}

template <class Fn>
std::vector<double> timed(std::size_t n, Fn&& fn) {
  std::vector<double> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    bench::check_stop();
    const auto t0 = Clock::now();
    fn();
    out.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string build = "build/release";
  std::size_t logins = 200, verifies = 200, hashes = 50;
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--build") {
      build = next();
    } else if (a == "--logins") {
      logins = std::stoul(next());
    } else if (a == "--verifies") {
      verifies = std::stoul(next());
    } else if (a == "--hashes") {
      hashes = std::stoul(next());
    } else if (a == "--keep") {
      keep = true;
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 3) {
    std::fprintf(stderr,
                 "usage: bench_identity <rabbitmq_url> <postgres_url> <redis_url> --build <dir> "
                 "[--logins N] [--verifies N] [--hashes N] [--keep]\n");
    return 2;
  }
  bench::install_stop_handlers();
  std::printf("identity: Argon2id m=19456 KiB t=2 p=1 (OWASP minimum, production default)\n");
  std::printf("load average: %s\n", bench::loadavg().c_str());

  // Baselines, same process, same run.
  std::string hash;
  auto hash_ms = timed(hashes, [&] { hash = auth::hash_password(kPassword); });
  auto verify_ms = timed(verifies, [&] {
    if (!auth::verify_password(hash, kPassword)) throw std::runtime_error("verify failed");
  });

  const std::string dir = bench::make_work_dir("identity");
  std::vector<double> login_ms;
  const int rc = bench::run_with_stack(dir, keep, [&](bench::Stack& stack) {
    const auto edge_port = bench::free_port();
    const std::map<std::string, std::string> common{
        {"SB_RABBITMQ_URL", pos[0]}, {"SB_POSTGRES_URL", pos[1]}, {"SB_REDIS_URL", pos[2]},
        {"SB_CONFIG", ""},           {"SB_LOG_LEVEL", "warn"},    {"SB_HTTP_PORT", "0"}};
    auto with = [&](std::map<std::string, std::string> extra) {
      extra.insert(common.begin(), common.end());
      return extra;
    };
    stack.start("store", {build + "/services/store/sb-store"}, with({}), "store.log");
    stack.start("registry", {build + "/services/registry/sb-registry"}, with({}), "registry.log");
    stack.start("edge", {build + "/services/edge/sb-edge"},
                with({{"SB_HTTP_PORT", std::to_string(edge_port)},
                      {"SB_AUTH_JWT_SECRET", kSecret},
                      {"SB_EDGE_ROUTES_POLL", "500ms"}}),
                "edge.log");
    stack.start("identity", {build + "/services/identity/sb-identity"},
                with({{"SB_AUTH_JWT_SECRET", kSecret},
                      {"SB_MODE", "production"},
                      {"SB_IDENTITY_BOOTSTRAP_USERNAME", "bench"},
                      {"SB_IDENTITY_BOOTSTRAP_PASSWORD", kPassword},
                      // One client hammers one user: keep it out of the limiter.
                      {"SB_IDENTITY_LOGIN_USER_FAILURES", "1000000"}}),
                "identity.log");
    httplib::Client http("127.0.0.1", edge_port);
    http.set_keep_alive(true);
    http.set_tcp_nodelay(true);  // as curl does: without it Nagle adds ~40 ms to each POST
    http.set_connection_timeout(5, 0);
    http.set_read_timeout(30, 0);
    const std::string body =
        R"({"tenant":"_platform","username":"bench","password":")" + kPassword + R"("})";
    stack.wait_until("the bootstrap admin can log in through the edge", std::chrono::seconds(90),
                     [&] {
                       auto r = http.Post("/api/identity/login", body, "application/json");
                       return r && r->status == 200;
                     });
    // Warm-up.
    for (int i = 0; i < 10; ++i) http.Post("/api/identity/login", body, "application/json");
    login_ms = timed(logins, [&] {
      auto r = http.Post("/api/identity/login", body, "application/json");
      if (!r || r->status != 200) {
        throw std::runtime_error("login failed: " + (r ? std::to_string(r->status) + " " + r->body
                                                       : httplib::to_string(r.error())));
      }
    });
  });
  if (rc != 0) return rc;

  std::printf("\nfigures (sequential, one keep-alive client):\n");
  print("hash cost alone (auth::hash_password)", figures(hash_ms));
  print("baseline: bare auth::verify_password", figures(verify_ms));
  const auto l = figures(login_ms);
  print("POST /api/identity/login via the edge", l);
  const auto v = figures(verify_ms);
  std::printf("  login overhead over the bare verify: p50 +%.2f ms, p99 +%.2f ms\n",
              l.p50_ms - v.p50_ms, l.p99_ms - v.p99_ms);
  return 0;
}
