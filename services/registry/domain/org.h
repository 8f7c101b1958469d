// The registry's domain model: an organisation of the Party's tree, as the domain rules see it.
// Plain values, no I/O; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace dangjian::registry {

// Values match the proto enums (dangjian.registry.v1.OrgKind etc.) and the database columns.
enum class OrgKind { kCommittee = 1, kGeneralBranch = 2, kBranch = 3, kGroup = 4 };
enum class OrgDomain {
  kVillage = 1,
  kCommunity = 2,
  kGovernmentAgency = 3,
  kPublicInstitution = 4,
  kStateEnterprise = 5,
  kNonPublicEnterprise = 6,
  kSocialOrganization = 7,
  kSchool = 8,
  kOther = 9,
};
enum class OrgStatus { kActive = 1, kDissolved = 2 };

bool IsValidKind(int value);
bool IsValidDomain(int value);
bool IsValidStatus(int value);
// 党委, 党总支, 党支部, 党小组: used in rule messages.
const char* KindName(OrgKind kind);

struct CivilDate {
  int year = 0;
  int month = 0;
  int day = 0;
  bool operator==(const CivilDate& o) const {
    return year == o.year && month == o.month && day == o.day;
  }
};

// The fields a client sets (on create, import and update).
struct OrgFields {
  std::string code;  // empty: none
  std::string name;
  OrgKind kind = OrgKind::kBranch;
  bool joint = false;
  OrgDomain domain = OrgDomain::kOther;
  std::string region_code;
  std::optional<CivilDate> established;
  bool operator==(const OrgFields& o) const {
    return code == o.code && name == o.name && kind == o.kind && joint == o.joint &&
           domain == o.domain && region_code == o.region_code && established == o.established;
  }
};

struct Org {
  int64_t id = 0;
  int64_t parent_id = 0;  // 0 for a root
  OrgFields fields;
  OrgStatus status = OrgStatus::kActive;
  int depth = 0;
  // Ids from the root down to this org itself, e.g. {1, 5, 23} for org 23.
  std::vector<int64_t> path;
  int64_t version = 1;   // bumped by every change; the etag is derived from it
  int64_t revision = 0;  // change-feed revision of the last change
  absl::Time create_time;
  absl::Time update_time;
  std::optional<absl::Time> dissolve_time;
  std::string dissolve_reason;

  // Ids from the root down to the parent.
  std::vector<int64_t> ancestor_ids() const {
    return path.empty() ? std::vector<int64_t>{}
                        : std::vector<int64_t>(path.begin(), path.end() - 1);
  }
  bool active() const { return status == OrgStatus::kActive; }
  // True if this org is `root` or below it.
  bool InSubtreeOf(int64_t root) const;
};

std::string EtagOf(const Org& org);

}  // namespace dangjian::registry
