#include "switchboard/shared/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <stdexcept>

#include "switchboard/shared/json.hpp"

namespace sb::log {
namespace {

struct State {
  std::mutex mutex;
  std::shared_ptr<spdlog::logger> logger;
  std::string service = "switchboard";
  std::string instance;
  bool json = true;
};

State& state() {
  static State s;
  return s;
}

std::atomic<int> g_level{static_cast<int>(Level::info)};
thread_local std::string t_correlation;

constexpr std::array<std::string_view, 7> kLevelNames = {"trace", "debug",    "info", "warn",
                                                         "error", "critical", "off"};

std::string random_instance() {
  std::random_device rd;
  char buf[13];
  std::snprintf(buf, sizeof buf, "%06x%06x", rd() & 0xffffffU, rd() & 0xffffffU);
  return buf;
}

std::string timestamp_now() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

void append_value(std::string& out, const FieldValue& v) {
  std::visit(
      [&out](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          json::append_quoted(out, x);
        } else if constexpr (std::is_same_v<T, bool>) {
          out += x ? "true" : "false";
        } else if constexpr (std::is_same_v<T, double>) {
          char buf[32];
          std::snprintf(buf, sizeof buf, "%.17g", x);
          out += buf;
        } else {
          out += std::to_string(x);
        }
      },
      v);
}

std::shared_ptr<spdlog::logger> logger() {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.logger) {
    s.logger =
        std::make_shared<spdlog::logger>("sb", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    s.logger->set_pattern("%v");
    s.logger->set_level(spdlog::level::trace);
    s.logger->flush_on(spdlog::level::trace);
  }
  if (s.instance.empty()) s.instance = random_instance();
  return s.logger;
}

}  // namespace

Level parse_level(std::string_view text) {
  for (std::size_t i = 0; i < kLevelNames.size(); ++i) {
    if (kLevelNames[i] == text) return static_cast<Level>(i);
  }
  if (text == "warning") return Level::warn;
  throw std::invalid_argument("unknown log level '" + std::string(text) +
                              "' (trace, debug, info, warn, error, critical, off)");
}

void init(const Options& options) {
  std::shared_ptr<spdlog::sinks::sink> sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  } else {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file);
  }
  auto l = std::make_shared<spdlog::logger>("sb", sink);
  l->set_pattern("%v");
  l->set_level(spdlog::level::trace);
  l->flush_on(spdlog::level::trace);
  auto& s = state();
  std::lock_guard lock(s.mutex);
  s.logger = std::move(l);
  s.service = options.service;
  s.instance = options.instance.empty() ? random_instance() : options.instance;
  s.json = options.json;
  g_level.store(static_cast<int>(options.level));
}

const std::string& instance_id() {
  logger();
  return state().instance;
}

bool enabled(Level level) {
  return level != Level::off && static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

std::string format_json(Level level, std::string_view message, Fields fields) {
  auto& s = state();
  std::string out;
  out.reserve(160 + message.size());
  out += "{\"ts\":\"";
  out += timestamp_now();
  out += "\",\"level\":\"";
  out += kLevelNames[static_cast<std::size_t>(level)];
  out += "\",\"service\":";
  json::append_quoted(out, s.service);
  out += ",\"instance\":";
  json::append_quoted(out, s.instance);
  if (!t_correlation.empty()) {
    out += ",\"correlation_id\":";
    json::append_quoted(out, t_correlation);
  }
  out += ",\"msg\":";
  json::append_quoted(out, message);
  for (const auto& f : fields) {
    out += ',';
    json::append_quoted(out, f.key);
    out += ':';
    append_value(out, f.value);
  }
  out += '}';
  return out;
}

void write(Level level, std::string_view message, Fields fields) {
  if (!enabled(level)) return;
  auto l = logger();
  if (state().json) {
    l->log(spdlog::level::info, "{}", format_json(level, message, fields));
    return;
  }
  std::string line = timestamp_now() + " " +
                     std::string(kLevelNames[static_cast<std::size_t>(level)]) + " " +
                     std::string(message);
  for (const auto& f : fields) {
    line += ' ';
    line += f.key;
    line += '=';
    std::string v;
    append_value(v, f.value);
    line += v;
  }
  if (!t_correlation.empty()) line += " correlation_id=" + t_correlation;
  l->log(spdlog::level::info, "{}", line);
}

std::string_view correlation_id() {
  return t_correlation;
}

CorrelationScope::CorrelationScope(std::string id) : previous_(std::move(t_correlation)) {
  t_correlation = std::move(id);
}

CorrelationScope::~CorrelationScope() {
  t_correlation = std::move(previous_);
}

}  // namespace sb::log
