#include "services/registry/dataset/city_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>

namespace dangjian::registry::dataset {
namespace {

using registry::v1::ImportOrgRow;
using registry::v1::OrgKind;

std::vector<ImportOrgRow> Tree(int count, uint64_t seed = 1) {
  CityTreeOptions options;
  options.org_count = count;
  options.seed = seed;
  return GenerateCityTree(options);
}

// [kind-parent]: which kinds may sit under which.
bool KindMaySitUnder(OrgKind child, OrgKind parent) {
  switch (child) {
    case registry::v1::ORG_KIND_GROUP:
      return parent == registry::v1::ORG_KIND_BRANCH;
    case registry::v1::ORG_KIND_BRANCH:
      return parent == registry::v1::ORG_KIND_GENERAL_BRANCH ||
             parent == registry::v1::ORG_KIND_COMMITTEE;
    case registry::v1::ORG_KIND_GENERAL_BRANCH:
    case registry::v1::ORG_KIND_COMMITTEE:
      return parent == registry::v1::ORG_KIND_COMMITTEE;
    default:
      return false;
  }
}

// A valid UTF-8 string (the registry stores names as text).
bool IsUtf8(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    if (c >= 0x80) {
      if ((c >> 5) == 0x6) {
        extra = 1;
      } else if ((c >> 4) == 0xE) {
        extra = 2;
      } else if ((c >> 3) == 0x1E) {
        extra = 3;
      } else {
        return false;
      }
    }
    if (i + extra >= text.size()) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += extra + 1;
  }
  return true;
}

size_t CharCount(const std::string& text) {
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) >> 6) != 0x2;
  }));
}

TEST(CityTree, HasExactlyTheRequestedSize) {
  for (int count : {1, 2, 15, 16, 200, 1000, 20000}) {
    EXPECT_EQ(Tree(count).size(), static_cast<size_t>(count)) << count;
  }
}

TEST(CityTree, SameSeedGivesTheSameTree) {
  const auto a = Tree(5000, 7);
  const auto b = Tree(5000, 7);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString()) << "row " << i;
  }
}

TEST(CityTree, OtherSeedGivesAnotherTree) {
  const auto a = Tree(5000, 1);
  const auto b = Tree(5000, 2);
  size_t differing = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].SerializeAsString() != b[i].SerializeAsString()) ++differing;
  }
  EXPECT_GT(differing, a.size() / 2);
}

TEST(CityTree, RootIsTheCityCommittee) {
  const auto rows = Tree(20000);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows[0].parent_code(), "");
  EXPECT_EQ(rows[0].kind(), registry::v1::ORG_KIND_COMMITTEE);
  EXPECT_EQ(rows[0].name(), "中共南京市委员会");
  for (size_t i = 1; i < rows.size(); ++i) ASSERT_NE(rows[i].parent_code(), "") << "row " << i;
}

TEST(CityTree, ParentsComeFirstAndKindRulesHold) {
  const auto rows = Tree(20000);
  std::map<std::string, OrgKind> seen;
  for (const ImportOrgRow& row : rows) {
    if (!row.parent_code().empty()) {
      auto parent = seen.find(row.parent_code());
      ASSERT_NE(parent, seen.end()) << row.code() << " comes before its parent";
      EXPECT_TRUE(KindMaySitUnder(row.kind(), parent->second))
          << row.code() << " " << registry::v1::OrgKind_Name(row.kind()) << " under "
          << registry::v1::OrgKind_Name(parent->second);
    }
    EXPECT_TRUE(seen.emplace(row.code(), row.kind()).second) << "duplicate code " << row.code();
  }
}

TEST(CityTree, HasFiveLevelsAndAboutTwelveDistricts) {
  const auto rows = Tree(20000);
  std::map<std::string, int> depth;
  std::map<int, int> per_level;
  for (const ImportOrgRow& row : rows) {
    const int d = row.parent_code().empty() ? 0 : depth.at(row.parent_code()) + 1;
    depth[row.code()] = d;
    ++per_level[d];
  }
  EXPECT_EQ(per_level.size(), 5u);
  EXPECT_EQ(per_level[0], 1);
  EXPECT_GE(per_level[1], 10);
  EXPECT_LE(per_level[1], 15);
  EXPECT_GT(per_level[2], 300);  // street/town committees and general branches
}

TEST(CityTree, BranchesAreMostOrgsAndGroupsOnlySome) {
  const auto rows = Tree(20000);
  std::map<OrgKind, int> per_kind;
  for (const ImportOrgRow& row : rows) ++per_kind[row.kind()];
  EXPECT_GT(per_kind[registry::v1::ORG_KIND_BRANCH], static_cast<int>(rows.size()) / 2);
  EXPECT_GT(per_kind[registry::v1::ORG_KIND_GROUP], 1000);
  EXPECT_LT(per_kind[registry::v1::ORG_KIND_GROUP], per_kind[registry::v1::ORG_KIND_BRANCH]);
  EXPECT_GT(per_kind[registry::v1::ORG_KIND_GENERAL_BRANCH], 100);
  EXPECT_GT(per_kind[registry::v1::ORG_KIND_COMMITTEE], 100);
}

TEST(CityTree, DomainsAreSpreadAndVillageCommunityHeavy) {
  const auto rows = Tree(20000);
  std::map<int, int> branches_per_domain;
  for (const ImportOrgRow& row : rows) {
    ASSERT_NE(row.domain(), registry::v1::ORG_DOMAIN_UNSPECIFIED) << row.code();
    if (row.kind() == registry::v1::ORG_KIND_BRANCH) ++branches_per_domain[row.domain()];
  }
  for (int d = registry::v1::ORG_DOMAIN_VILLAGE; d <= registry::v1::ORG_DOMAIN_OTHER; ++d) {
    EXPECT_GT(branches_per_domain[d], 0)
        << registry::v1::OrgDomain_Name(static_cast<registry::v1::OrgDomain>(d));
  }
  const int village_and_community = branches_per_domain[registry::v1::ORG_DOMAIN_VILLAGE] +
                                    branches_per_domain[registry::v1::ORG_DOMAIN_COMMUNITY];
  for (const auto& [domain, count] : branches_per_domain) {
    if (domain != registry::v1::ORG_DOMAIN_VILLAGE &&
        domain != registry::v1::ORG_DOMAIN_COMMUNITY) {
      EXPECT_GT(village_and_community, count) << domain;
    }
  }
}

TEST(CityTree, OnlyBranchesAreJointAndSomeAre) {
  const auto rows = Tree(20000);
  int joint = 0;
  for (const ImportOrgRow& row : rows) {
    if (row.joint()) {
      EXPECT_EQ(row.kind(), registry::v1::ORG_KIND_BRANCH) << row.code();
      ++joint;
    }
  }
  EXPECT_GT(joint, 50);
}

TEST(CityTree, FieldsAreWellFormed) {
  const auto rows = Tree(20000);
  std::map<std::string, int> year_of;
  for (const ImportOrgRow& row : rows) {
    ASSERT_LE(row.code().size(), 64u) << row.code();
    for (char c : row.code()) {
      ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')
          << row.code();
    }
    ASSERT_EQ(row.region_code().size(), 6u) << row.code();
    EXPECT_TRUE(std::all_of(row.region_code().begin(), row.region_code().end(), [](char c) {
      return c >= '0' && c <= '9';
    })) << row.code();
    EXPECT_EQ(row.region_code().substr(0, 4), "3201") << row.code();
    ASSERT_TRUE(IsUtf8(row.name())) << row.code();
    EXPECT_GE(CharCount(row.name()), 4u) << row.name();
    EXPECT_LE(CharCount(row.name()), 200u) << row.name();
    if (row.has_established_date()) {
      const auto& date = row.established_date();
      EXPECT_GE(date.year(), 1949);
      EXPECT_LE(date.year(), 2023);
      EXPECT_GE(date.month(), 1);
      EXPECT_LE(date.month(), 12);
      EXPECT_GE(date.day(), 1);
      EXPECT_LE(date.day(), 28);
      // A child is never set up before its parent's year.
      auto parent = year_of.find(row.parent_code());
      if (parent != year_of.end()) {
        EXPECT_GE(date.year(), parent->second) << row.code();
      }
      year_of[row.code()] = date.year();
    }
  }
}

TEST(CityTree, DistrictsHaveTheirOwnRegionCodes) {
  const auto rows = Tree(20000);
  std::set<std::string> district_regions;
  for (const ImportOrgRow& row : rows) {
    if (row.parent_code() == rows[0].code() && row.region_code() != "320100") {
      district_regions.insert(row.region_code());
    }
  }
  EXPECT_EQ(district_regions.size(), 11u);
  EXPECT_TRUE(district_regions.count("320102"));
}

}  // namespace
}  // namespace dangjian::registry::dataset
