#include <algorithm>
#include <array>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "services/registry/domain/org.h"
#include "services/registry/domain/rules.h"

namespace dangjian::registry {

bool IsValidKind(int value) { return value >= 1 && value <= 4; }
bool IsValidDomain(int value) { return value >= 1 && value <= 9; }
bool IsValidStatus(int value) { return value == 1 || value == 2; }

const char* KindName(OrgKind kind) {
  switch (kind) {
    case OrgKind::kCommittee:
      return "党委 (committee)";
    case OrgKind::kGeneralBranch:
      return "党总支 (general branch)";
    case OrgKind::kBranch:
      return "党支部 (branch)";
    case OrgKind::kGroup:
      return "党小组 (group)";
  }
  return "unknown kind";
}

bool Org::InSubtreeOf(int64_t root) const {
  return std::find(path.begin(), path.end(), root) != path.end();
}

std::string EtagOf(const Org& org) { return absl::StrCat(org.id, "-", org.version); }

bool KindMaySitUnder(OrgKind child, std::optional<OrgKind> parent) {
  switch (child) {
    case OrgKind::kCommittee:
      return !parent.has_value() || *parent == OrgKind::kCommittee;
    case OrgKind::kGeneralBranch:
      return parent == OrgKind::kCommittee;
    case OrgKind::kBranch:
      return parent == OrgKind::kCommittee || parent == OrgKind::kGeneralBranch;
    case OrgKind::kGroup:
      return parent == OrgKind::kBranch;
  }
  return false;
}

absl::Status CheckKindParent(OrgKind child, std::optional<OrgKind> parent) {
  if (KindMaySitUnder(child, parent)) return absl::OkStatus();
  std::string allowed;
  switch (child) {
    case OrgKind::kCommittee:
      allowed = "a 党委 sits under a 党委 or is a root";
      break;
    case OrgKind::kGeneralBranch:
      allowed = "a 党总支 sits under a 党委";
      break;
    case OrgKind::kBranch:
      allowed = "a 党支部 sits under a 党总支 or a 党委";
      break;
    case OrgKind::kGroup:
      allowed = "a 党小组 sits only under a 党支部";
      break;
  }
  return RuleViolationError(
      kRuleKindParent,
      absl::StrCat(allowed, "; a ", KindName(child), " cannot ",
                   parent ? absl::StrCat("sit under a ", KindName(*parent)) : "be a root"));
}

absl::Status CheckPlacement(OrgKind kind, const Org* parent) {
  if (parent != nullptr && !parent->active()) {
    return RuleViolationError(
        kRuleParentActive,
        absl::StrCat("parent org ", parent->id, " is dissolved; nothing new goes under it"));
  }
  return CheckKindParent(kind, parent ? std::optional<OrgKind>(parent->fields.kind) : std::nullopt);
}

absl::Status CheckMoveTarget(const Org& org, const Org* new_parent) {
  if (new_parent != nullptr && new_parent->InSubtreeOf(org.id)) {
    return RuleViolationError(
        kRuleMoveCycle, new_parent->id == org.id
                            ? absl::StrCat("org ", org.id, " cannot be its own parent")
                            : absl::StrCat("org ", new_parent->id, " is inside the subtree of org ",
                                           org.id, "; moving there would make a cycle"));
  }
  return CheckPlacement(org.fields.kind, new_parent);
}

absl::Status CheckKindChange(OrgKind new_kind, const Org* parent,
                             const std::vector<OrgKind>& child_kinds) {
  DJ_RETURN_IF_ERROR(CheckKindParent(
      new_kind, parent ? std::optional<OrgKind>(parent->fields.kind) : std::nullopt));
  for (OrgKind child : child_kinds) {
    if (!KindMaySitUnder(child, new_kind)) {
      return RuleViolationError(kRuleKindParent,
                                absl::StrCat("a child ", KindName(child), " cannot sit under a ",
                                             KindName(new_kind), "; move or re-kind it first"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDissolve(const Org& org, int64_t active_children) {
  DJ_RETURN_IF_ERROR(CheckMutable(org));
  if (active_children > 0) {
    return RuleViolationError(kRuleDissolveChildren,
                              absl::StrCat("org ", org.id, " still has ", active_children,
                                           " active child org(s); dissolve or move them first"));
  }
  return absl::OkStatus();
}

absl::Status CheckMutable(const Org& org) {
  if (org.active()) return absl::OkStatus();
  return RuleViolationError(kRuleDissolved,
                            absl::StrCat("org ", org.id, " is dissolved and kept as history"));
}

bool InScope(int64_t id, absl::Span<const int64_t> ancestor_ids, std::optional<int64_t> scope) {
  return !scope.has_value() || id == *scope ||
         std::find(ancestor_ids.begin(), ancestor_ids.end(), *scope) != ancestor_ids.end();
}

absl::Status CheckInScope(const Org* org, std::optional<int64_t> scope, absl::string_view what) {
  if (scope.has_value()) {
    if (org == nullptr || !org->InSubtreeOf(*scope)) {
      return absl::PermissionDeniedError(absl::StrCat(what, " is outside the subtree of org ",
                                                      *scope, " that the caller may use"));
    }
    return absl::OkStatus();
  }
  if (org == nullptr) return absl::NotFoundError(absl::StrCat(what, " not found"));
  return absl::OkStatus();
}

absl::Status CheckMayUseRoot(std::optional<int64_t> scope) {
  if (!scope.has_value()) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "only a city-wide caller may place an org at the top of the tree; the caller's scope is org ",
      *scope));
}

int Utf8Length(absl::string_view s) {
  std::vector<char32_t> cps;
  if (!DecodeUtf8(s, &cps)) return -1;
  return static_cast<int>(cps.size());
}

void ValidateName(absl::string_view name, const std::string& field, FieldErrors& errors) {
  ValidateText(name, field, TextRules{kMaxNameChars, /*required=*/true, /*multiline=*/false},
               errors);
}

void ValidateCode(absl::string_view code, const std::string& field, FieldErrors& errors) {
  if (code.size() > static_cast<size_t>(kMaxCodeChars)) {
    errors.Add(field, absl::StrCat("is ", code.size(), " characters; at most ", kMaxCodeChars));
    return;
  }
  for (char c : code) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      errors.Add(field, "may contain only letters, digits, '-', '_' and '.'");
      return;
    }
  }
}

void ValidateRegionCode(absl::string_view region_code, const std::string& field,
                        FieldErrors& errors) {
  // GB/T 2260 administrative division codes: 2 digits of province, 2 of city, 2 of county.
  static constexpr std::array<int, 34> kProvinces = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34,
                                                     35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
                                                     53, 54, 61, 62, 63, 64, 65, 71, 81, 82};
  if (region_code.empty()) {
    errors.Add(field, "is required (6-digit administrative division code)");
    return;
  }
  if (region_code.size() != 6 || !std::all_of(region_code.begin(), region_code.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      })) {
    errors.Add(field, "must be a 6-digit administrative division code, e.g. 320102");
    return;
  }
  const int province = (region_code[0] - '0') * 10 + (region_code[1] - '0');
  if (std::find(kProvinces.begin(), kProvinces.end(), province) == kProvinces.end()) {
    errors.Add(field, absl::StrCat("starts with ", region_code.substr(0, 2),
                                   ", which is not a province-level division code"));
  }
}

namespace {
bool IsLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int DaysInMonth(int y, int m) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}
bool Before(const CivilDate& a, const CivilDate& b) {
  return std::tie(a.year, a.month, a.day) < std::tie(b.year, b.month, b.day);
}
}  // namespace

void ValidateEstablished(const CivilDate& date, const CivilDate& today, const std::string& field,
                         FieldErrors& errors) {
  if (date.month < 1 || date.month > 12 || date.day < 1 || date.year < 1 ||
      date.day > DaysInMonth(date.year, date.month)) {
    errors.Add(field,
               absl::StrCat("is not a calendar date: ", date.year, "-", date.month, "-", date.day));
  } else if (date.year < kMinEstablishedYear) {
    errors.Add(field, absl::StrCat("is before ", kMinEstablishedYear));
  } else if (Before(today, date)) {
    errors.Add(field, "is in the future");
  }
}

void ValidateJoint(OrgKind kind, bool joint, const std::string& field, FieldErrors& errors) {
  if (joint && kind != OrgKind::kBranch) {
    errors.Add(field, "[joint-branch] only a 党支部 (branch) can be a joint branch (联合党支部)");
  }
}

void ValidateFields(const OrgFields& fields, const CivilDate& today, absl::string_view prefix,
                    FieldErrors& errors) {
  const std::string p(prefix);
  ValidateCode(fields.code, p + "code", errors);
  ValidateName(fields.name, p + "name", errors);
  ValidateRegionCode(fields.region_code, p + "region_code", errors);
  if (fields.established)
    ValidateEstablished(*fields.established, today, p + "established_date", errors);
  ValidateJoint(fields.kind, fields.joint, p + "joint", errors);
}

CivilDate ShanghaiDate(absl::Time t) {
  static const absl::TimeZone kShanghai = absl::FixedTimeZone(8 * 60 * 60);
  const absl::CivilDay day = absl::ToCivilDay(t, kShanghai);
  return {static_cast<int>(day.year()), day.month(), day.day()};
}

}  // namespace dangjian::registry
