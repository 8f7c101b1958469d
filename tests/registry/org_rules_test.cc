// Pure unit tests of the registry's domain rules (services/registry/domain/rules.h): placement in
// the tree by kind ([kind-parent], [parent-active], [move-cycle]), dissolution
// ([dissolve-children], [org-dissolved]), the caller's scope ([org-scope]) and field validation
// ([joint-branch] and the field limits). Each boundary is tested once just inside and once just
// outside. Rules come from shared/DOMAIN.md §1. No servers, no clock: `today` is passed in.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/registry/domain/org.h"
#include "services/registry/domain/rules.h"

namespace dangjian::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// An org `id` of `kind` whose materialised path (root down to itself) is `path`.
Org MakeOrg(int64_t id, OrgKind kind, std::vector<int64_t> path,
            OrgStatus status = OrgStatus::kActive) {
  Org org;
  org.id = id;
  org.parent_id = path.size() >= 2 ? path[path.size() - 2] : 0;
  org.fields.kind = kind;
  org.fields.name = absl::StrCat("org ", id);
  org.fields.region_code = "320102";
  org.status = status;
  org.depth = static_cast<int>(path.size()) - 1;
  org.path = std::move(path);
  return org;
}

// The rule tag a status carries, or "" if none.
std::string RuleOf(const absl::Status& status) { return GetViolatedRule(status).value_or(""); }

std::vector<std::string> FieldsOf(const FieldErrors& errors) {
  std::vector<std::string> fields;
  for (const FieldViolation& v : errors.violations()) fields.push_back(v.field);
  return fields;
}

// The tree most tests use:
//   1 党委 (root)
//   ├── 2 党委
//   │   └── 3 党总支
//   │       └── 4 党支部
//   │           └── 5 党小组
//   └── 6 党委
//       └── 8 党支部
//           └── 7 党小组
class OrgTree : public ::testing::Test {
 protected:
  Org root_ = MakeOrg(1, OrgKind::kCommittee, {1});
  Org committee_ = MakeOrg(2, OrgKind::kCommittee, {1, 2});
  Org general_branch_ = MakeOrg(3, OrgKind::kGeneralBranch, {1, 2, 3});
  Org branch_ = MakeOrg(4, OrgKind::kBranch, {1, 2, 3, 4});
  Org group_ = MakeOrg(5, OrgKind::kGroup, {1, 2, 3, 4, 5});
  Org sibling_committee_ = MakeOrg(6, OrgKind::kCommittee, {1, 6});
  Org other_branch_ = MakeOrg(8, OrgKind::kBranch, {1, 6, 8});
  Org other_group_ = MakeOrg(7, OrgKind::kGroup, {1, 6, 8, 7});
};

// ---------------------------------------------------------------------------------------------
// [kind-parent]

struct KindCase {
  OrgKind child;
  std::optional<OrgKind> parent;  // nullopt: a root
  bool allowed;
};

// DOMAIN.md §1 [kind-parent]: a 党小组 sits only under a 党支部; a 党支部 under a 党总支 or a 党委;
// a 党总支 under a 党委; a 党委 under a 党委 or is a root. The full 4 kinds x (4 kinds + root).
constexpr OrgKind kC = OrgKind::kCommittee;
constexpr OrgKind kGB = OrgKind::kGeneralBranch;
constexpr OrgKind kB = OrgKind::kBranch;
constexpr OrgKind kG = OrgKind::kGroup;
const KindCase kKindMatrix[] = {
    // 党委
    {kC, std::nullopt, true},
    {kC, kC, true},
    {kC, kGB, false},
    {kC, kB, false},
    {kC, kG, false},
    // 党总支
    {kGB, std::nullopt, false},
    {kGB, kC, true},
    {kGB, kGB, false},
    {kGB, kB, false},
    {kGB, kG, false},
    // 党支部
    {kB, std::nullopt, false},
    {kB, kC, true},
    {kB, kGB, true},
    {kB, kB, false},
    {kB, kG, false},
    // 党小组
    {kG, std::nullopt, false},
    {kG, kC, false},
    {kG, kGB, false},
    {kG, kB, true},
    {kG, kG, false},
};

std::string Describe(const KindCase& c) {
  return absl::StrCat(KindName(c.child), " under ", c.parent ? KindName(*c.parent) : "(root)");
}

TEST(KindParent, KindMaySitUnder_FollowsTheFullMatrix) {  // [kind-parent]
  for (const KindCase& c : kKindMatrix) {
    SCOPED_TRACE(Describe(c));
    EXPECT_EQ(KindMaySitUnder(c.child, c.parent), c.allowed);
  }
}

TEST(KindParent, CheckKindParent_AgreesWithTheMatrix) {  // [kind-parent]
  for (const KindCase& c : kKindMatrix) {
    SCOPED_TRACE(Describe(c));
    const absl::Status status = CheckKindParent(c.child, c.parent);
    EXPECT_EQ(status.ok(), c.allowed) << status;
  }
}

TEST(KindParent, CheckKindParent_RefusalIsFailedPreconditionNamingRuleAndBothKinds) {
  // [kind-parent] a 党小组 under a 党总支: refused, the error names both kinds.
  const absl::Status status = CheckKindParent(OrgKind::kGroup, OrgKind::kGeneralBranch);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
  EXPECT_EQ(RuleOf(status), std::string(kRuleKindParent));
  EXPECT_THAT(std::string(status.message()), HasSubstr("[kind-parent]"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("党小组"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("党总支"));
}

TEST(KindParent, CheckKindParent_RootRefusalNamesKindAndRoot) {  // [kind-parent]
  const absl::Status status = CheckKindParent(OrgKind::kBranch, std::nullopt);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
  EXPECT_THAT(std::string(status.message()), HasSubstr("党支部"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("root"));
}

// ---------------------------------------------------------------------------------------------
// CheckPlacement: [kind-parent] and [parent-active]

TEST_F(OrgTree, Placement_AllowsFittingKindUnderActiveParent) {  // [parent-active] inside
  EXPECT_TRUE(CheckPlacement(OrgKind::kGroup, &branch_).ok());
  EXPECT_TRUE(CheckPlacement(OrgKind::kCommittee, nullptr).ok());
}

TEST_F(OrgTree, Placement_RefusesDissolvedParent) {  // [parent-active] outside
  branch_.status = OrgStatus::kDissolved;
  const absl::Status status = CheckPlacement(OrgKind::kGroup, &branch_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "parent-active");
  EXPECT_THAT(std::string(status.message()), HasSubstr("4"));
}

TEST_F(OrgTree, Placement_RefusesWrongKindUnderActiveParent) {  // [kind-parent]
  const absl::Status status = CheckPlacement(OrgKind::kGroup, &general_branch_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
}

TEST_F(OrgTree, Placement_RefusesNonCommitteeRoot) {  // [kind-parent]
  EXPECT_EQ(RuleOf(CheckPlacement(OrgKind::kGeneralBranch, nullptr)), "kind-parent");
}

// ---------------------------------------------------------------------------------------------
// CheckMoveTarget: [move-cycle], then placement

TEST_F(OrgTree, MoveTarget_RefusesOwnId) {  // [move-cycle]
  const absl::Status status = CheckMoveTarget(committee_, &committee_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "move-cycle");
  EXPECT_THAT(std::string(status.message()), HasSubstr("own parent"));
}

TEST_F(OrgTree, MoveTarget_RefusesDirectChild) {  // [move-cycle]
  EXPECT_EQ(RuleOf(CheckMoveTarget(committee_, &general_branch_)), "move-cycle");
}

TEST_F(OrgTree, MoveTarget_RefusesDeepDescendant) {  // [move-cycle]
  const absl::Status status = CheckMoveTarget(committee_, &branch_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "move-cycle");
  EXPECT_THAT(std::string(status.message()), HasSubstr("cycle"));
}

TEST_F(OrgTree, MoveTarget_AllowsSibling) {  // [move-cycle] just outside the subtree
  EXPECT_TRUE(CheckMoveTarget(committee_, &sibling_committee_).ok());
}

TEST_F(OrgTree, MoveTarget_AllowsOwnAncestor) {  // [move-cycle] the parent's parent is fine
  EXPECT_TRUE(CheckMoveTarget(general_branch_, &root_).ok());
}

TEST_F(OrgTree, MoveTarget_RefusesBranchUnderGroup) {  // [kind-parent]
  const absl::Status status = CheckMoveTarget(branch_, &other_group_);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
}

TEST_F(OrgTree, MoveTarget_AllowsBranchUnderOtherCommittee) {  // [kind-parent] inside
  EXPECT_TRUE(CheckMoveTarget(branch_, &sibling_committee_).ok());
}

TEST_F(OrgTree, MoveTarget_RefusesDissolvedTarget) {  // [parent-active]
  sibling_committee_.status = OrgStatus::kDissolved;
  EXPECT_EQ(RuleOf(CheckMoveTarget(committee_, &sibling_committee_)), "parent-active");
}

TEST_F(OrgTree, MoveTarget_ToRootOnlyForCommittee) {  // [kind-parent]
  EXPECT_TRUE(CheckMoveTarget(committee_, nullptr).ok());
  EXPECT_EQ(RuleOf(CheckMoveTarget(branch_, nullptr)), "kind-parent");
}

// ---------------------------------------------------------------------------------------------
// CheckKindChange: [kind-parent] against the parent and every child

TEST_F(OrgTree, KindChange_GeneralBranchWithBranchesBecomesCommittee) {  // [kind-parent] inside
  EXPECT_TRUE(
      CheckKindChange(OrgKind::kCommittee, &committee_, {OrgKind::kBranch, OrgKind::kBranch}).ok());
}

TEST_F(OrgTree, KindChange_CommitteeWithGeneralBranchesCannotBecomeBranch) {  // [kind-parent]
  const absl::Status status = CheckKindChange(OrgKind::kBranch, &root_, {OrgKind::kGeneralBranch});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
  EXPECT_THAT(std::string(status.message()), HasSubstr("党总支"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("党支部"));
}

TEST_F(OrgTree, KindChange_CommitteeWithoutChildrenMayBecomeBranch) {  // [kind-parent] inside
  EXPECT_TRUE(CheckKindChange(OrgKind::kBranch, &root_, {}).ok());
}

TEST_F(OrgTree, KindChange_RootCannotBecomeBranch) {  // [kind-parent]
  const absl::Status status = CheckKindChange(OrgKind::kBranch, nullptr, {});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "kind-parent");
}

TEST_F(OrgTree, KindChange_ChecksEveryChildNotJustTheFirst) {  // [kind-parent]
  // 党总支 -> 党委 fits the branches but not the group at the end.
  EXPECT_EQ(RuleOf(CheckKindChange(OrgKind::kCommittee, &committee_,
                                   {OrgKind::kBranch, OrgKind::kGroup})),
            "kind-parent");
}

// ---------------------------------------------------------------------------------------------
// CheckDissolve / CheckMutable: [dissolve-children], [org-dissolved]

TEST_F(OrgTree, Dissolve_AllowedWithNoActiveChildren) {  // [dissolve-children] inside
  EXPECT_TRUE(CheckDissolve(branch_, 0).ok());
}

TEST_F(OrgTree, Dissolve_RefusedWithOneActiveChild) {  // [dissolve-children] outside
  const absl::Status status = CheckDissolve(branch_, 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "dissolve-children");
  EXPECT_THAT(std::string(status.message()), HasSubstr("1 active child"));
}

TEST_F(OrgTree, Dissolve_RefusedWhenAlreadyDissolved) {  // [org-dissolved]
  branch_.status = OrgStatus::kDissolved;
  const absl::Status status = CheckDissolve(branch_, 0);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(RuleOf(status), "org-dissolved");
}

TEST_F(OrgTree, Mutable_ActiveYesDissolvedNo) {  // [org-dissolved]
  EXPECT_TRUE(CheckMutable(branch_).ok());
  branch_.status = OrgStatus::kDissolved;
  EXPECT_EQ(RuleOf(CheckMutable(branch_)), "org-dissolved");
}

// ---------------------------------------------------------------------------------------------
// InScope: [org-scope] on the wire form (id and ancestor ids, root first).
TEST(InScopeTest, TheScopeOrgAndItsDescendantsOnly) {
  const std::vector<int64_t> ancestors = {1, 5, 9};   // org 12 under 9 under 5 under 1
  EXPECT_TRUE(InScope(12, ancestors, std::nullopt));  // city-wide
  EXPECT_TRUE(InScope(12, ancestors, 12));            // the scope org itself
  EXPECT_TRUE(InScope(12, ancestors, 1));             // the root of its branch of the tree
  EXPECT_TRUE(InScope(12, ancestors, 9));             // its parent
  EXPECT_FALSE(InScope(12, ancestors, 13));           // a sibling or anything else
  EXPECT_FALSE(InScope(9, {1, 5}, 12));               // a descendant's scope does not reach up
  EXPECT_FALSE(InScope(1, {}, 5));                    // a root outside the scope
  EXPECT_TRUE(InScope(1, {}, 1));
}

// CheckInScope / CheckMayUseRoot: [org-scope]

TEST_F(OrgTree, InScope_CityWideCallerGetsNotFoundForMissingOrg) {  // [org-scope]
  const absl::Status status = CheckInScope(nullptr, std::nullopt, "org 42");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr("org 42"));
}

TEST_F(OrgTree, InScope_CityWideCallerSeesEveryOrg) {  // [org-scope]
  EXPECT_TRUE(CheckInScope(&root_, std::nullopt, "org 1").ok());
  EXPECT_TRUE(CheckInScope(&other_group_, std::nullopt, "org 7").ok());
}

TEST_F(OrgTree, InScope_ScopedCallerGetsPermissionDeniedForMissingOrg) {  // [org-scope]
  // A scoped caller must not learn whether an org outside its subtree exists.
  const absl::Status status = CheckInScope(nullptr, 2, "org 42");
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(status.message()), HasSubstr("org 42"));
}

TEST_F(OrgTree, InScope_ScopedCallerRefusedOutsideSubtree) {  // [org-scope] outside
  EXPECT_EQ(CheckInScope(&sibling_committee_, 2, "org 6").code(),
            absl::StatusCode::kPermissionDenied);
  // The scope root's own parent is outside too.
  EXPECT_EQ(CheckInScope(&root_, 2, "org 1").code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(OrgTree, InScope_ScopedCallerAllowedOnScopeRootAndDescendants) {  // [org-scope] inside
  EXPECT_TRUE(CheckInScope(&committee_, 2, "org 2").ok());
  EXPECT_TRUE(CheckInScope(&general_branch_, 2, "org 3").ok());
  EXPECT_TRUE(CheckInScope(&group_, 2, "org 5").ok());
}

TEST(MayUseRoot, CityWideYesScopedNo) {  // [org-scope]
  EXPECT_TRUE(CheckMayUseRoot(std::nullopt).ok());
  EXPECT_EQ(CheckMayUseRoot(1).code(), absl::StatusCode::kPermissionDenied);
}

// ---------------------------------------------------------------------------------------------
// Utf8Length

TEST(Utf8Length, CountsCodePoints) {
  EXPECT_EQ(Utf8Length(""), 0);
  EXPECT_EQ(Utf8Length("abc"), 3);
  EXPECT_EQ(Utf8Length("党建"), 2);                 // 3 bytes each
  EXPECT_EQ(Utf8Length("\xC3\xA9"), 1);             // é, 2 bytes
  EXPECT_EQ(Utf8Length("\xF0\x9F\x98\x80"), 1);     // U+1F600, 4 bytes
  EXPECT_EQ(Utf8Length("a党\xF0\x9F\x98\x80"), 3);  // mixed widths
}

TEST(Utf8Length, RefusesTruncatedAndMalformedSequences) {
  EXPECT_EQ(Utf8Length("\xE5\x85"), -1);              // 党 missing its last byte
  EXPECT_EQ(Utf8Length("ab\xF0\x9F\x98"), -1);        // 4-byte sequence cut at the end
  EXPECT_EQ(Utf8Length("\x80"), -1);                  // lone continuation byte
  EXPECT_EQ(Utf8Length("\xE5\x41\x41"), -1);          // lead byte without continuations
  EXPECT_EQ(Utf8Length("\xFF"), -1);                  // never valid in UTF-8
  EXPECT_EQ(Utf8Length("\xF8\x88\x80\x80\x80"), -1);  // 5-byte form (obsolete)
}

// Strict UTF-8 (RFC 3629 §3): overlong encodings ("\xC0\x80" is NUL in disguise), UTF-16
// surrogates and code points above U+10FFFF are not characters.
TEST(Utf8Length, RefusesOverlongSurrogateAndOutOfRangeSequences) {
  EXPECT_EQ(Utf8Length(std::string("\xC0\x80", 2)), -1);  // overlong NUL
  EXPECT_EQ(Utf8Length("\xC1\xBF"), -1);                  // overlong U+007F
  EXPECT_EQ(Utf8Length("\xE0\x80\xAF"), -1);              // overlong '/'
  EXPECT_EQ(Utf8Length("\xF0\x80\x80\xAF"), -1);          // overlong '/'
  EXPECT_EQ(Utf8Length("\xED\xA0\x80"), -1);              // surrogate U+D800
  EXPECT_EQ(Utf8Length("\xF4\x90\x80\x80"), -1);          // U+110000
  EXPECT_EQ(Utf8Length("\xF5\x80\x80\x80"), -1);          // lead byte beyond U+10FFFF
  FieldErrors errors;
  ValidateName(std::string("a\xC0\x80z", 4), "name", errors);
  EXPECT_FALSE(errors.empty());
}

// ---------------------------------------------------------------------------------------------
// ValidateName: 1..200 characters (code points, not bytes), valid UTF-8, no control characters.

std::string Repeat(absl::string_view unit, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out.append(unit.data(), unit.size());
  return out;
}

TEST(ValidateName, Accepts200ChineseCharacters) {  // kMaxNameChars inside (600 bytes)
  FieldErrors errors;
  ValidateName(Repeat("党", kMaxNameChars), "name", errors);
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateName, Refuses201ChineseCharacters) {  // kMaxNameChars outside
  FieldErrors errors;
  ValidateName(Repeat("党", kMaxNameChars + 1), "name", errors);
  ASSERT_EQ(errors.violations().size(), 1u);
  EXPECT_EQ(errors.violations()[0].field, "name");
  EXPECT_THAT(errors.violations()[0].description, HasSubstr("201"));
}

TEST(ValidateName, Accepts200FourByteCharacters) {  // counts code points even at 4 bytes each
  FieldErrors errors;
  ValidateName(Repeat("\xF0\xA0\x80\x80", kMaxNameChars), "name", errors);  // U+20000 CJK Ext B
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateName, AsciiBoundaryIsAlso200) {
  FieldErrors inside;
  ValidateName(std::string(200, 'a'), "name", inside);
  EXPECT_TRUE(inside.empty());
  FieldErrors outside;
  ValidateName(std::string(201, 'a'), "name", outside);
  EXPECT_EQ(outside.violations().size(), 1u);
}

TEST(ValidateName, AcceptsOneCharacter) {  // lower bound inside
  FieldErrors errors;
  ValidateName("党", "name", errors);
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateName, RefusesEmptyAndWhitespaceOnly) {  // lower bound outside
  for (const char* name : {"", " ", "   ", "\t", " \n "}) {
    SCOPED_TRACE(absl::StrCat("name='", name, "'"));
    FieldErrors errors;
    ValidateName(name, "name", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "name");
    EXPECT_THAT(errors.violations()[0].description, HasSubstr("required"));
  }
}

TEST(ValidateName, RefusesInvalidUtf8) {
  for (const char* name : {"\xFF", "党\xE5\x85", "abc\x80"}) {
    FieldErrors errors;
    ValidateName(name, "name", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_THAT(errors.violations()[0].description, HasSubstr("UTF-8"));
  }
}

TEST(ValidateName, RefusesControlCharacters) {
  for (const char* name : {"a\nb", "a\tb", "\x01name", "name\x1F", "\r"}) {
    SCOPED_TRACE(absl::StrCat("name=", absl::CEscape(name)));
    FieldErrors errors;
    ValidateName(absl::StrCat("党支部", name), "name", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_THAT(errors.violations()[0].description, HasSubstr("control"));
  }
}

// [issue 10] A right-to-left override made one org's name display as another's; invisible
// characters make two names that look the same differ. Names go through common/text.h.
TEST(ValidateName, RefusesBidiControlsAndInvisibleCharacters) {
  for (const char* name :
       {"红山\u202E部支党", "红山\u2066党支部", "红山\u200F党支部", "红山\u200B党支部",
        "红山\uFEFF党支部", "红山\U000E0041党支部", "红山\u2028党支部"}) {
    SCOPED_TRACE(absl::CEscape(name));
    FieldErrors errors;
    ValidateName(name, "org.name", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "org.name");
    EXPECT_THAT(errors.violations()[0].description, HasSubstr("at character 3"));
  }
  // Just outside the refused ranges.
  for (const char* name : {"红山\u202F党支部", "红山\u2070党支部", "红山\u200C党支部"}) {
    SCOPED_TRACE(absl::CEscape(name));
    FieldErrors errors;
    ValidateName(name, "org.name", errors);
    EXPECT_TRUE(errors.empty());
  }
}

TEST(ValidateName, AcceptsSpaceJustAboveControlRange) {  // 0x20 is the first non-control byte
  FieldErrors errors;
  ValidateName("第一 党支部", "name", errors);
  EXPECT_TRUE(errors.empty());
}

// DEL (U+007F) and the C1 controls (U+0080..U+009F) are control characters (category Cc) too.
TEST(ValidateName, RefusesDelAndC1ControlCharacters) {
  for (const char* name : {"党支部\x7F", "党支部\xC2\x85", "党支部\xC2\x9F"}) {
    SCOPED_TRACE(absl::CEscape(name));
    FieldErrors errors;
    ValidateName(name, "name", errors);
    EXPECT_EQ(errors.violations().size(), 1u);
  }
}

// ---------------------------------------------------------------------------------------------
// ValidateCode: optional, at most 64 of [A-Za-z0-9-_.]

TEST(ValidateCode, AcceptsEmpty) {
  FieldErrors errors;
  ValidateCode("", "code", errors);
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateCode, Accepts64Refuses65) {  // kMaxCodeChars
  FieldErrors inside;
  ValidateCode(std::string(kMaxCodeChars, 'A'), "code", inside);
  EXPECT_TRUE(inside.empty());
  FieldErrors outside;
  ValidateCode(std::string(kMaxCodeChars + 1, 'A'), "code", outside);
  ASSERT_EQ(outside.violations().size(), 1u);
  EXPECT_EQ(outside.violations()[0].field, "code");
  EXPECT_THAT(outside.violations()[0].description, HasSubstr("65"));
}

TEST(ValidateCode, AcceptsLettersDigitsDashUnderscoreDot) {
  FieldErrors errors;
  ValidateCode("NJ-320102_dw.001-Zz9", "code", errors);
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateCode, RefusesOtherCharacters) {
  for (const char* code : {"a b", "a/b", "a:b", "a@b", "a+b", "党委", "a\tb", "a,b", "a*"}) {
    SCOPED_TRACE(code);
    FieldErrors errors;
    ValidateCode(code, "code", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "code");
  }
}

// ---------------------------------------------------------------------------------------------
// ValidateRegionCode: 6 digits (GB/T 2260), province prefix a real province-level division.

void ExpectRegion(absl::string_view code, bool ok) {
  SCOPED_TRACE(absl::StrCat("region_code='", code, "'"));
  FieldErrors errors;
  ValidateRegionCode(code, "region_code", errors);
  if (ok) {
    EXPECT_TRUE(errors.empty());
  } else {
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "region_code");
  }
}

TEST(ValidateRegionCode, AcceptsSixDigitCode) { ExpectRegion("320102", true); }

TEST(ValidateRegionCode, RefusesFiveAndSevenDigits) {
  ExpectRegion("32010", false);
  ExpectRegion("3201020", false);
}

TEST(ValidateRegionCode, RefusesLettersAndEmpty) {
  ExpectRegion("32010a", false);
  ExpectRegion("AB0102", false);
  ExpectRegion("32 102", false);
  ExpectRegion("", false);
}

TEST(ValidateRegionCode, ProvincePrefixBounds) {
  ExpectRegion("001234", false);
  ExpectRegion("101234", false);  // just below 11 (北京)
  ExpectRegion("110101", true);   // 北京, lowest
  ExpectRegion("820000", true);   // 澳门, highest
  ExpectRegion("830000", false);  // just above 82
  ExpectRegion("991234", false);
  ExpectRegion("160000", false);  // gap between 15 and 21
}

// ---------------------------------------------------------------------------------------------
// ValidateEstablished: a calendar date in [1921-01-01, today].

constexpr CivilDate kToday{2026, 5, 20};

void ExpectEstablished(CivilDate date, bool ok, CivilDate today = kToday) {
  SCOPED_TRACE(absl::StrCat(date.year, "-", date.month, "-", date.day));
  FieldErrors errors;
  ValidateEstablished(date, today, "established_date", errors);
  if (ok) {
    EXPECT_TRUE(errors.empty());
  } else {
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "established_date");
  }
}

TEST(ValidateEstablished, FoundingYearBoundary) {  // kMinEstablishedYear
  ExpectEstablished({1921, 1, 1}, true);
  ExpectEstablished({1920, 12, 31}, false);
}

TEST(ValidateEstablished, LeapDays) {
  ExpectEstablished({2024, 2, 29}, true);
  ExpectEstablished({2023, 2, 29}, false);
  ExpectEstablished({2023, 2, 28}, true);
  ExpectEstablished({2000, 2, 29}, true);                 // divisible by 400
  ExpectEstablished({2100, 2, 29}, false, {2200, 1, 1});  // divisible by 100, not 400
}

TEST(ValidateEstablished, TodayOkTomorrowRefused) {
  ExpectEstablished(kToday, true);
  ExpectEstablished({2026, 5, 21}, false);
  // Across a year end as well.
  ExpectEstablished({2025, 12, 31}, true, {2025, 12, 31});
  ExpectEstablished({2026, 1, 1}, false, {2025, 12, 31});
}

TEST(ValidateEstablished, RefusesImpossibleDates) {
  ExpectEstablished({2020, 12, 1}, true);
  ExpectEstablished({2020, 13, 1}, false);
  ExpectEstablished({2020, 0, 1}, false);
  ExpectEstablished({2020, 4, 30}, true);
  ExpectEstablished({2020, 4, 31}, false);
  ExpectEstablished({2020, 1, 0}, false);
}

// ---------------------------------------------------------------------------------------------
// ValidateJoint: [joint-branch]

TEST(ValidateJoint, JointBranchAccepted) {  // [joint-branch]
  FieldErrors errors;
  ValidateJoint(OrgKind::kBranch, true, "joint", errors);
  EXPECT_TRUE(errors.empty());
}

TEST(ValidateJoint, JointOfAnyOtherKindRefused) {  // [joint-branch]
  for (OrgKind kind : {OrgKind::kCommittee, OrgKind::kGeneralBranch, OrgKind::kGroup}) {
    SCOPED_TRACE(KindName(kind));
    FieldErrors errors;
    ValidateJoint(kind, true, "joint", errors);
    ASSERT_EQ(errors.violations().size(), 1u);
    EXPECT_EQ(errors.violations()[0].field, "joint");
    EXPECT_THAT(errors.violations()[0].description, HasSubstr("[joint-branch]"));
  }
}

TEST(ValidateJoint, NonJointCommitteeAccepted) {  // [joint-branch]
  FieldErrors errors;
  ValidateJoint(OrgKind::kCommittee, false, "joint", errors);
  EXPECT_TRUE(errors.empty());
}

// ---------------------------------------------------------------------------------------------
// ValidateFields

OrgFields GoodFields() {
  OrgFields f;
  f.code = "NJ-001";
  f.name = "玄武区某街道党委";
  f.kind = OrgKind::kCommittee;
  f.domain = OrgDomain::kCommunity;
  f.region_code = "320102";
  f.established = CivilDate{1950, 10, 1};
  return f;
}

TEST(ValidateFields, GoodFieldsHaveNoViolations) {
  FieldErrors errors;
  ValidateFields(GoodFields(), kToday, "org.", errors);
  EXPECT_THAT(errors.violations(), IsEmpty());
}

TEST(ValidateFields, PrefixesEveryFieldName) {
  OrgFields f = GoodFields();
  f.code = "bad code";
  f.name = "";
  f.region_code = "99";
  f.established = CivilDate{2026, 5, 21};
  f.joint = true;  // on a 党委: [joint-branch]
  FieldErrors errors;
  ValidateFields(f, kToday, "org.", errors);
  EXPECT_THAT(FieldsOf(errors),
              ::testing::UnorderedElementsAre("org.code", "org.name", "org.region_code",
                                              "org.established_date", "org.joint"));
  const absl::Status status = errors.ToStatus();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GetFieldViolations(status).size(), 5u);
}

TEST(ValidateFields, EmptyPrefixAndOtherPrefix) {
  OrgFields f = GoodFields();
  f.name = " ";
  FieldErrors bare;
  ValidateFields(f, kToday, "", bare);
  EXPECT_THAT(FieldsOf(bare), ::testing::ElementsAre("name"));
  FieldErrors row;
  ValidateFields(f, kToday, "rows[3].", row);
  EXPECT_THAT(FieldsOf(row), ::testing::ElementsAre("rows[3].name"));
}

TEST(ValidateFields, AbsentEstablishedDateIsNotChecked) {
  OrgFields f = GoodFields();
  f.established.reset();
  FieldErrors errors;
  ValidateFields(f, kToday, "org.", errors);
  EXPECT_TRUE(errors.empty());
}

// ---------------------------------------------------------------------------------------------
// ShanghaiDate: UTC+8

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

TEST(ShanghaiDate, MidnightBoundaryIsSixteenUtc) {
  EXPECT_EQ(ShanghaiDate(Utc(2025, 12, 31, 15, 59, 59)), (CivilDate{2025, 12, 31}));
  EXPECT_EQ(ShanghaiDate(Utc(2025, 12, 31, 16, 0, 0)), (CivilDate{2026, 1, 1}));
  EXPECT_EQ(ShanghaiDate(Utc(2025, 12, 31, 16, 0, 0) - absl::Nanoseconds(1)),
            (CivilDate{2025, 12, 31}));
}

TEST(ShanghaiDate, BeforeEpoch) {
  // 1949-10-01 15:00 in Beijing was 07:00 UTC.
  EXPECT_EQ(ShanghaiDate(Utc(1949, 10, 1, 7, 0, 0)), (CivilDate{1949, 10, 1}));
  EXPECT_EQ(ShanghaiDate(Utc(1949, 9, 30, 16, 0, 0)), (CivilDate{1949, 10, 1}));
  EXPECT_EQ(ShanghaiDate(Utc(1949, 9, 30, 15, 59, 59)), (CivilDate{1949, 9, 30}));
}

}  // namespace
}  // namespace dangjian::registry
