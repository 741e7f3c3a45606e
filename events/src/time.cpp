#include "switchboard/events/time.hpp"

#include <cstdint>

#include "switchboard/events/types.hpp"

namespace sb::events {
namespace {
using namespace std::chrono;

void put_digits(std::string& out, long long value, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out.append(buf, static_cast<std::size_t>(width));
}

class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  // Exactly `count` digits.
  int digits(int count, const char* field) {
    int value = 0;
    for (int i = 0; i < count; ++i) {
      if (pos_ >= text_.size() || !is_digit(text_[pos_])) fail(std::string("expected ") + field);
      value = value * 10 + (text_[pos_++] - '0');
    }
    return value;
  }
  void expect(std::string_view one_of, const char* what) {
    if (pos_ >= text_.size() || one_of.find(text_[pos_]) == std::string_view::npos) fail(what);
    ++pos_;
  }
  bool peek_is(std::string_view one_of) const {
    return pos_ < text_.size() && one_of.find(text_[pos_]) != std::string_view::npos;
  }
  char take() { return text_[pos_++]; }
  bool at_end() const { return pos_ == text_.size(); }
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  [[noreturn]] void fail(const std::string& what) const {
    throw InvalidValue("invalid RFC 3339 time '" + std::string(text_) + "': " + what);
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

Timestamp now_ms() {
  return floor<milliseconds>(system_clock::now());
}

std::string format_rfc3339_ms(Timestamp at) {
  const auto day = floor<days>(at);
  const year_month_day ymd{day};
  const int y = static_cast<int>(ymd.year());
  if (y < 0 || y > 9999) {
    throw InvalidValue("time outside years 0000..9999 cannot be written in RFC 3339");
  }
  const hh_mm_ss<milliseconds> hms{at - day};
  std::string out;
  out.reserve(24);
  put_digits(out, y, 4);
  out += '-';
  put_digits(out, static_cast<unsigned>(ymd.month()), 2);
  out += '-';
  put_digits(out, static_cast<unsigned>(ymd.day()), 2);
  out += 'T';
  put_digits(out, hms.hours().count(), 2);
  out += ':';
  put_digits(out, hms.minutes().count(), 2);
  out += ':';
  put_digits(out, hms.seconds().count(), 2);
  out += '.';
  put_digits(out, hms.subseconds().count(), 3);
  out += 'Z';
  return out;
}

std::string format_rfc3339_ms(system_clock::time_point at) {
  return format_rfc3339_ms(floor<milliseconds>(at));
}

Timestamp parse_rfc3339(std::string_view text) {
  Reader r(text);
  const int y = r.digits(4, "a 4-digit year");
  r.expect("-", "expected '-' after the year");
  const int mo = r.digits(2, "a 2-digit month");
  r.expect("-", "expected '-' after the month");
  const int d = r.digits(2, "a 2-digit day");
  r.expect("Tt ", "expected 'T' between date and time");
  const int h = r.digits(2, "2-digit hours");
  r.expect(":", "expected ':' after the hours");
  const int mi = r.digits(2, "2-digit minutes");
  r.expect(":", "expected ':' after the minutes");
  const int s = r.digits(2, "2-digit seconds");

  std::int64_t millis = 0;
  if (r.peek_is(".")) {
    r.take();
    int count = 0;
    while (r.peek_is("0123456789")) {
      const char c = r.take();
      // Digits past the millisecond are accepted and dropped (truncation is
      // a floor here because the fraction is always added to the seconds).
      if (count < 3) millis = millis * 10 + (c - '0');
      if (++count > 9) r.fail("more than 9 fractional digits");
    }
    if (count == 0) r.fail("expected digits after '.'");
    for (int i = count; i < 3; ++i) millis *= 10;
  }

  int offset_minutes = 0;
  if (r.peek_is("Zz")) {
    r.take();
  } else if (r.peek_is("+-")) {
    const int sign = r.take() == '-' ? -1 : 1;
    const int oh = r.digits(2, "2-digit offset hours");
    r.expect(":", "expected ':' in the offset");
    const int om = r.digits(2, "2-digit offset minutes");
    if (oh > 23 || om > 59) r.fail("offset out of range");
    offset_minutes = sign * (oh * 60 + om);
  } else {
    r.fail("expected 'Z' or a ±hh:mm offset");
  }
  if (!r.at_end()) r.fail("unexpected text after the time");

  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                           day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) r.fail("no such date");
  if (h > 23) r.fail("hours out of range");
  if (mi > 59) r.fail("minutes out of range");
  if (s == 60) r.fail("leap seconds are not supported");
  if (s > 59) r.fail("seconds out of range");

  const auto local = sys_days{ymd} + hours{h} + minutes{mi} + seconds{s} + milliseconds{millis};
  return local - minutes{offset_minutes};
}

std::optional<Timestamp> try_parse_rfc3339(std::string_view text) noexcept {
  try {
    return parse_rfc3339(text);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace sb::events
