// StreamSlots: the per-caller and per-process limits, the messages that state them, slots freed
// by destruction (and by moving), and the metrics.
#include "common/stream_slots.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <optional>
#include <vector>

namespace dangjian {
namespace {

using ::testing::HasSubstr;

TEST(StreamSlotsTest, Acquire_RefusesACallerAtItsLimitButNotOthers) {
  StreamSlots slots({/*max_open=*/10, /*max_per_caller=*/2}, "test streams");
  auto a1 = slots.Acquire("alice");
  auto a2 = slots.Acquire("alice");
  ASSERT_TRUE(a1.ok() && a2.ok());
  auto a3 = slots.Acquire("alice");
  ASSERT_FALSE(a3.ok());
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(a3.status().message(), HasSubstr("caller alice already has 2 test streams open"));
  EXPECT_THAT(a3.status().message(), HasSubstr("the limit per caller is 2"));
  EXPECT_TRUE(slots.Acquire("bob").ok());
  EXPECT_EQ(slots.open_for("alice"), 2);
}

TEST(StreamSlotsTest, Acquire_RefusesEveryoneAtTheProcessLimit) {
  StreamSlots slots({/*max_open=*/2, /*max_per_caller=*/5}, "test streams");
  auto a = slots.Acquire("alice");
  auto b = slots.Acquire("bob");
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = slots.Acquire("carol");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("its limit is 2"));
  EXPECT_EQ(slots.open(), 2);
}

TEST(StreamSlotsTest, Slot_FreedWhenDestroyedOrMovedOnto) {
  StreamSlots slots({/*max_open=*/1, /*max_per_caller=*/1}, "test streams");
  {
    auto held = slots.Acquire("alice");
    ASSERT_TRUE(held.ok());
    EXPECT_FALSE(slots.Acquire("alice").ok());
    // Moving keeps one slot held, not two, and frees nothing.
    std::optional<StreamSlots::Slot> moved;
    moved.emplace(*std::move(held));
    EXPECT_EQ(slots.open(), 1);
  }
  EXPECT_EQ(slots.open(), 0);
  EXPECT_EQ(slots.open_for("alice"), 0);
  EXPECT_EQ(slots.released(), 1u);
  EXPECT_TRUE(slots.Acquire("alice").ok());
}

TEST(StreamSlotsTest, Slot_MoveAssignedFreesTheSlotItHeld) {
  StreamSlots slots({/*max_open=*/2, /*max_per_caller=*/1}, "test streams");
  auto alice = slots.Acquire("alice");
  auto bob = slots.Acquire("bob");
  ASSERT_TRUE(alice.ok() && bob.ok());
  *alice = std::move(*bob);
  EXPECT_EQ(slots.open(), 1);
  EXPECT_EQ(slots.open_for("alice"), 0);
  EXPECT_EQ(slots.open_for("bob"), 1);
}

TEST(StreamSlotsTest, Metrics_GaugeFollowsOpenSlotsAndRefusalsCountByLimit) {
  prometheus::Registry registry;
  auto& open = prometheus::BuildGauge().Name("open").Register(registry).Add({});
  auto& refused = prometheus::BuildCounter().Name("refused").Register(registry);
  StreamSlots slots({/*max_open=*/2, /*max_per_caller=*/1}, "test streams", &open, &refused);
  EXPECT_EQ(refused.Add({{"limit", "process"}}).Value(), 0);
  EXPECT_EQ(refused.Add({{"limit", "caller"}}).Value(), 0);
  std::vector<StreamSlots::Slot> held;
  held.push_back(*slots.Acquire("alice"));
  EXPECT_FALSE(slots.Acquire("alice").ok());
  held.push_back(*slots.Acquire("bob"));
  EXPECT_FALSE(slots.Acquire("carol").ok());
  EXPECT_EQ(open.Value(), 2);
  EXPECT_EQ(refused.Add({{"limit", "caller"}}).Value(), 1);
  EXPECT_EQ(refused.Add({{"limit", "process"}}).Value(), 1);
  held.clear();
  EXPECT_EQ(open.Value(), 0);
}

}  // namespace
}  // namespace dangjian
