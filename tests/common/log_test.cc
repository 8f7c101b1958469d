// Structured log lines, and RateLimitedLog: a failure repeated on every attempt (1,000 in 10 s)
// makes a bounded number of lines, each stating how many it held back, with time injected.
#include "common/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/clock.h"

namespace dangjian::log {
namespace {

// The JSON lines written to stderr while `body` runs.
template <typename Body>
std::vector<nlohmann::json> LinesOf(Body body) {
  ::testing::internal::CaptureStderr();
  body();
  const std::string text = ::testing::internal::GetCapturedStderr();
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  return lines;
}

TEST(LogTest, Write_OneJsonObjectPerLineWithTheCallersFields) {
  const auto lines = LinesOf([] { Warn("something odd", {{"count", 3}, {"who", "me"}}); });
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["level"], "warn");
  EXPECT_EQ(lines[0]["msg"], "something odd");
  EXPECT_EQ(lines[0]["count"], 3);
  EXPECT_EQ(lines[0]["who"], "me");
}

TEST(RateLimitedLogTest, AThousandFailuresInTenSecondsMakeOneLineThenOnePerWindowWithTheCount) {
  FakeClock clock;
  RateLimitedLog limited(absl::Seconds(10), clock);
  // 1,000 identical failures over 10 s, then 20 s more of the same.
  const auto lines = LinesOf([&] {
    for (int i = 0; i < 3000; ++i) {
      limited.Warn("database connection could not be opened", {{"attempt", i}});
      clock.Advance(absl::Milliseconds(10));
    }
  });
  ASSERT_EQ(lines.size(), 3u) << "one line per 10 s of the failure";
  EXPECT_EQ(lines[0]["attempt"], 0);
  EXPECT_FALSE(lines[0].contains("suppressed")) << "the first says nothing of repeats";
  for (int k = 1; k < 3; ++k) {
    EXPECT_EQ(lines[k]["msg"], "database connection could not be opened");
    EXPECT_EQ(lines[k]["attempt"], 1000 * k) << "fields are those of the line written";
    EXPECT_EQ(lines[k]["suppressed"], 999);
    EXPECT_DOUBLE_EQ(lines[k]["suppressed_in_s"].get<double>(), 10.0);
  }
  // The run's end tells the caller how many came in all (for its "over" line), and the next
  // failure is written at once.
  EXPECT_EQ(limited.EndRun("database connection could not be opened"), 3000);
  EXPECT_EQ(limited.EndRun("database connection could not be opened"), 0);
  const auto after = LinesOf([&] { limited.Warn("database connection could not be opened"); });
  ASSERT_EQ(after.size(), 1u);
  EXPECT_FALSE(after[0].contains("suppressed"));
}

TEST(RateLimitedLogTest, DifferentMessagesAreHeldBackSeparately) {
  FakeClock clock;
  RateLimitedLog limited(absl::Seconds(10), clock);
  const auto lines = LinesOf([&] {
    for (int i = 0; i < 100; ++i) {
      limited.Warn("a");
      limited.Error("b");
    }
  });
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["msg"], "a");
  EXPECT_EQ(lines[1]["msg"], "b");
  EXPECT_EQ(lines[1]["level"], "error");
  EXPECT_EQ(limited.EndRun("a"), 100);
  EXPECT_EQ(limited.EndRun("b"), 100);
}

TEST(RateLimitedLogTest, HeldBackLinesAreStillCountedWhenTheirLevelIsOff) {
  FakeClock clock;
  RateLimitedLog limited(absl::Seconds(10), clock);
  const auto lines = LinesOf([&] {
    for (int i = 0; i < 5; ++i) limited.Write(Level::kDebug, "quiet");
  });
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(limited.EndRun("quiet"), 5);
}

}  // namespace
}  // namespace dangjian::log
