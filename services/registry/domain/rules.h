// The registry's domain rules, each named by its tag from shared/DOMAIN.md (or, for rules of
// our own making, a tag in the same style), and the field validation of orgs. Pure functions of
// their inputs: the time ("today" in Asia/Shanghai) is passed in. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/status.h"
#include "services/registry/domain/org.h"

namespace dangjian::registry {

// Rule tags, as they appear in FAILED_PRECONDITION errors.
inline constexpr absl::string_view kRuleKindParent = "kind-parent";
inline constexpr absl::string_view kRuleParentActive = "parent-active";
inline constexpr absl::string_view kRuleMoveCycle = "move-cycle";
inline constexpr absl::string_view kRuleDissolveChildren = "dissolve-children";
inline constexpr absl::string_view kRuleDissolved = "org-dissolved";

// [org-scope] A caller sees and changes only the subtree of its scope (nullopt: the whole city).
// Anything else, including an org that does not exist (`org` nullptr), is PERMISSION_DENIED for a
// scoped caller, so it learns nothing outside its subtree; a city-wide caller gets NOT_FOUND for
// a missing org. `what` names the org in the message, e.g. "org 42" or "parent org 7".
absl::Status CheckInScope(const Org* org, std::optional<int64_t> scope, absl::string_view what);
// The test behind [org-scope] for an org known by its id and its ancestors' ids (root first), as
// the wire form carries them: true if `scope` is unset, the org itself or one of its ancestors.
bool InScope(int64_t id, absl::Span<const int64_t> ancestor_ids, std::optional<int64_t> scope);
// Creating or moving something to the top of the tree needs a city-wide caller.
absl::Status CheckMayUseRoot(std::optional<int64_t> scope);

// Field limits.
inline constexpr int kMaxNameChars = 200;
inline constexpr int kMaxCodeChars = 64;
inline constexpr int kMaxReasonChars = 500;
inline constexpr int kMaxRequestIdChars = 128;
inline constexpr int kMaxEtagChars = 64;
inline constexpr int kMinEstablishedYear = 1921;  // the Party's founding year

// [kind-parent] A 党小组 sits only under a 党支部; a 党支部 under a 党总支 or a 党委; a 党总支
// under a 党委; a 党委 under a 党委 or is a root. (DOMAIN.md §1,
// 《中国共产党支部工作条例（试行）》.) `parent` is nullopt for a root.
bool KindMaySitUnder(OrgKind child, std::optional<OrgKind> parent);
absl::Status CheckKindParent(OrgKind child, std::optional<OrgKind> parent);

// Placing an org (create, import, move) under `parent` (nullptr for a root): [kind-parent], and
// [parent-active]: nothing new goes under a dissolved org.
absl::Status CheckPlacement(OrgKind kind, const Org* parent);

// [move-cycle] An org cannot move under itself or its own descendants.
absl::Status CheckMoveTarget(const Org& org, const Org* new_parent);

// A kind change must still fit the parent and every child ([kind-parent]).
absl::Status CheckKindChange(OrgKind new_kind, const Org* parent,
                             const std::vector<OrgKind>& child_kinds);

// [dissolve-children] An org is dissolved only when none of its children is active.
absl::Status CheckDissolve(const Org& org, int64_t active_children);

// [org-dissolved] A dissolved org is history: it is not updated or moved.
absl::Status CheckMutable(const Org& org);

// Field validation. Adds one violation per bad field, prefixed by `prefix` (e.g. "org.").
// `today` is the civil date in Asia/Shanghai.
void ValidateFields(const OrgFields& fields, const CivilDate& today, absl::string_view prefix,
                    FieldErrors& errors);
void ValidateName(absl::string_view name, const std::string& field, FieldErrors& errors);
void ValidateCode(absl::string_view code, const std::string& field, FieldErrors& errors);
void ValidateRegionCode(absl::string_view region_code, const std::string& field,
                        FieldErrors& errors);
void ValidateEstablished(const CivilDate& date, const CivilDate& today, const std::string& field,
                         FieldErrors& errors);
// [joint-branch] Only a 党支部 may be a joint branch (联合党支部).
void ValidateJoint(OrgKind kind, bool joint, const std::string& field, FieldErrors& errors);

// The civil date of `t` in Asia/Shanghai (UTC+8, no daylight saving since 1991).
CivilDate ShanghaiDate(absl::Time t);

// Number of Unicode code points in valid UTF-8, or -1 if `s` is not valid UTF-8.
int Utf8Length(absl::string_view s);

}  // namespace dangjian::registry
