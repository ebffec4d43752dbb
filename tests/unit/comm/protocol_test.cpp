// The protocol's bookkeeping that every engine shares (comm/protocol.h): a participant's slot in a call.
#include "comm/protocol.h"

#include <gtest/gtest.h>

namespace moedist::comm {
namespace {

Call callOf(std::vector<int> participants) {
  Call call;
  call.participants = std::move(participants);
  return call;
}

TEST(CallSlot, EveryRankTakesPartSlotIsTheRank) {
  const Call call = callOf({0, 1, 2, 3});
  for (int r = 0; r < 4; ++r) EXPECT_EQ(call.slotOf(r), r);
  EXPECT_EQ(call.slotOf(4), -1);
  EXPECT_EQ(call.slotOf(-1), -1);
}

TEST(CallSlot, SubsetSlotIsTheIndex) {
  const Call survivors = callOf({1, 3, 5});  // elastic scale-in: ranks 0, 2 and 4 were removed
  EXPECT_EQ(survivors.slotOf(1), 0);
  EXPECT_EQ(survivors.slotOf(3), 1);
  EXPECT_EQ(survivors.slotOf(5), 2);
  EXPECT_EQ(survivors.slotOf(0), -1);
  EXPECT_EQ(survivors.slotOf(2), -1);
  const Call gap = callOf({0, 2});  // starts at 0 but skips a rank: not every rank takes part
  EXPECT_EQ(gap.slotOf(0), 0);
  EXPECT_EQ(gap.slotOf(2), 1);
  EXPECT_EQ(gap.slotOf(1), -1);
}

}  // namespace
}  // namespace moedist::comm
