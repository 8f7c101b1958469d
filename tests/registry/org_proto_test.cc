// Pure unit tests of the conversion between the domain Org and its wire form
// (services/registry/domain/org_proto.h). The cache stores orgs in their wire form and rebuilds
// them with FromProto, so ToProto -> bytes -> FromProto must give back every field. Client input
// goes through FieldsFromProto, which must name UNSPECIFIED and unknown enums as field violations.
#include "services/registry/domain/org_proto.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "dangjian/registry/v1/registry.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "services/registry/domain/org.h"

namespace dangjian::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

absl::Time Utc(int y, int mo, int d, int h, int mi, int s) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s), absl::UTCTimeZone());
}

// An org with every field set to a distinct, non-default value.
Org FullOrg() {
  Org org;
  org.id = 23;
  org.parent_id = 5;
  org.fields.code = "NJ-XW-023";
  org.fields.name = "玄武区某社区联合党支部";
  org.fields.kind = OrgKind::kBranch;
  org.fields.joint = true;
  org.fields.domain = OrgDomain::kSocialOrganization;
  org.fields.region_code = "320102";
  org.fields.established = CivilDate{1998, 7, 1};
  org.status = OrgStatus::kDissolved;
  org.depth = 2;
  org.path = {1, 5, 23};
  org.version = 7;
  org.revision = 4321;
  org.create_time = Utc(2024, 3, 1, 8, 30, 0) + absl::Nanoseconds(123456789);
  org.update_time = Utc(2025, 6, 2, 9, 0, 1) + absl::Microseconds(5);
  org.dissolve_time = Utc(2025, 6, 2, 9, 0, 1) + absl::Microseconds(5);
  org.dissolve_reason = "玄组〔2025〕12号";
  return org;
}

// Every field of two orgs, one expectation each so a failure names the field.
void ExpectSameOrg(const Org& got, const Org& want) {
  EXPECT_EQ(got.id, want.id);
  EXPECT_EQ(got.parent_id, want.parent_id);
  EXPECT_EQ(got.fields.code, want.fields.code);
  EXPECT_EQ(got.fields.name, want.fields.name);
  EXPECT_EQ(got.fields.kind, want.fields.kind);
  EXPECT_EQ(got.fields.joint, want.fields.joint);
  EXPECT_EQ(got.fields.domain, want.fields.domain);
  EXPECT_EQ(got.fields.region_code, want.fields.region_code);
  EXPECT_EQ(got.fields.established.has_value(), want.fields.established.has_value());
  if (got.fields.established && want.fields.established) {
    EXPECT_EQ(got.fields.established->year, want.fields.established->year);
    EXPECT_EQ(got.fields.established->month, want.fields.established->month);
    EXPECT_EQ(got.fields.established->day, want.fields.established->day);
  }
  EXPECT_TRUE(got.fields == want.fields);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.depth, want.depth);
  EXPECT_EQ(got.path, want.path);
  EXPECT_EQ(got.version, want.version);
  EXPECT_EQ(got.revision, want.revision);
  EXPECT_EQ(got.create_time, want.create_time);
  EXPECT_EQ(got.update_time, want.update_time);
  EXPECT_EQ(got.dissolve_time, want.dissolve_time);
  EXPECT_EQ(got.dissolve_reason, want.dissolve_reason);
}

// Through bytes, as the cache does.
Org ThroughWire(const Org& org) {
  const std::string bytes = ToProto(org).SerializeAsString();
  v1::Org parsed;
  EXPECT_TRUE(parsed.ParseFromString(bytes));
  return FromProto(parsed);
}

TEST(OrgProto, ToProto_SetsEveryField) {
  const v1::Org p = ToProto(FullOrg());
  EXPECT_EQ(p.id(), 23);
  EXPECT_EQ(p.parent_id(), 5);
  EXPECT_EQ(p.code(), "NJ-XW-023");
  EXPECT_EQ(p.name(), "玄武区某社区联合党支部");
  EXPECT_EQ(p.kind(), v1::ORG_KIND_BRANCH);
  EXPECT_TRUE(p.joint());
  EXPECT_EQ(p.domain(), v1::ORG_DOMAIN_SOCIAL_ORGANIZATION);
  EXPECT_EQ(p.region_code(), "320102");
  EXPECT_EQ(p.status(), v1::ORG_STATUS_DISSOLVED);
  ASSERT_TRUE(p.has_established_date());
  EXPECT_EQ(p.established_date().year(), 1998);
  EXPECT_EQ(p.established_date().month(), 7);
  EXPECT_EQ(p.established_date().day(), 1);
  EXPECT_EQ(p.depth(), 2);
  EXPECT_THAT(p.ancestor_ids(), ElementsAre(1, 5));  // root down to the parent, not itself
  EXPECT_EQ(p.etag(), "23-7");                       // "<id>-<version>"
  EXPECT_EQ(p.create_time().seconds(), absl::ToUnixSeconds(Utc(2024, 3, 1, 8, 30, 0)));
  EXPECT_EQ(p.create_time().nanos(), 123456789);
  EXPECT_EQ(p.update_time().nanos(), 5000);
  ASSERT_TRUE(p.has_dissolve_time());
  EXPECT_EQ(p.dissolve_time().seconds(), absl::ToUnixSeconds(Utc(2025, 6, 2, 9, 0, 1)));
  EXPECT_EQ(p.dissolve_reason(), "玄组〔2025〕12号");
  EXPECT_EQ(p.revision(), 4321);
}

TEST(OrgProto, RoundTripsEveryField) { ExpectSameOrg(FromProto(ToProto(FullOrg())), FullOrg()); }

TEST(OrgProto, RoundTripsEveryFieldThroughBytes) {
  ExpectSameOrg(ThroughWire(FullOrg()), FullOrg());
}

TEST(OrgProto, RoundTripsActiveRootWithoutOptionalFields) {
  Org org;
  org.id = 1;
  org.parent_id = 0;
  org.fields.name = "某市委";
  org.fields.kind = OrgKind::kCommittee;
  org.fields.domain = OrgDomain::kGovernmentAgency;
  org.fields.region_code = "320100";
  org.status = OrgStatus::kActive;
  org.depth = 0;
  org.path = {1};
  org.version = 1;
  org.revision = 1;
  org.create_time = Utc(2026, 1, 1, 0, 0, 0);
  org.update_time = org.create_time;

  const v1::Org p = ToProto(org);
  EXPECT_FALSE(p.has_established_date());
  EXPECT_FALSE(p.has_dissolve_time());
  EXPECT_THAT(p.ancestor_ids(), IsEmpty());
  EXPECT_EQ(p.etag(), "1-1");
  EXPECT_EQ(p.code(), "");

  const Org back = ThroughWire(org);
  ExpectSameOrg(back, org);
  EXPECT_FALSE(back.fields.established.has_value());
  EXPECT_FALSE(back.dissolve_time.has_value());
  EXPECT_THAT(back.ancestor_ids(), IsEmpty());
}

TEST(OrgProto, RoundTripsLargeIdsAndVersion) {
  Org org = FullOrg();
  org.id = int64_t{9'000'000'000'123};
  org.path = {int64_t{9'000'000'000'001}, org.id};
  org.parent_id = org.path[0];
  org.depth = 1;
  org.version = int64_t{5'000'000'000};
  const v1::Org p = ToProto(org);
  EXPECT_EQ(p.etag(), "9000000000123-5000000000");
  ExpectSameOrg(ThroughWire(org), org);
}

TEST(OrgProto, RoundTripsTimesBefore1970) {
  Org org = FullOrg();
  org.fields.established = CivilDate{1949, 10, 1};
  org.create_time = Utc(1949, 10, 1, 7, 0, 0) + absl::Nanoseconds(1);
  org.update_time = absl::UnixEpoch() - absl::Nanoseconds(1);
  org.dissolve_time = absl::UnixEpoch() - absl::Milliseconds(1500);
  ExpectSameOrg(ThroughWire(org), org);
}

TEST(OrgProto, ToProtoClearsTheTarget) {
  v1::Org out;
  out.set_etag("stale");
  out.add_ancestor_ids(99);
  out.mutable_dissolve_time()->set_seconds(1);
  Org org = FullOrg();
  org.dissolve_time.reset();
  ToProto(org, &out);
  EXPECT_EQ(out.etag(), "23-7");
  EXPECT_THAT(out.ancestor_ids(), ElementsAre(1, 5));
  EXPECT_FALSE(out.has_dissolve_time());
}

// FromProto is fed by the cache from whatever Redis holds: a malformed etag must not throw.
TEST(OrgProto, FromProtoDoesNotThrowOnMalformedEtag) {
  for (const char* etag : {"23-", "23-x", "23-99999999999999999999"}) {
    SCOPED_TRACE(etag);
    v1::Org p = ToProto(FullOrg());
    p.set_etag(etag);
    EXPECT_NO_THROW(FromProto(p));
  }
}

// ---------------------------------------------------------------------------------------------
// FieldsFromProto

v1::Org ClientOrg() {
  v1::Org p;
  p.set_code("NJ-1");
  p.set_name("某党支部");
  p.set_kind(v1::ORG_KIND_BRANCH);
  p.set_joint(true);
  p.set_domain(v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE);
  p.set_region_code("320102");
  return p;
}

std::vector<std::string> FieldsOf(const FieldErrors& errors) {
  std::vector<std::string> fields;
  for (const FieldViolation& v : errors.violations()) fields.push_back(v.field);
  return fields;
}

TEST(FieldsFromProto, CopiesClientFields) {
  v1::Org p = ClientOrg();
  p.mutable_established_date()->set_year(2001);
  p.mutable_established_date()->set_month(2);
  p.mutable_established_date()->set_day(3);
  FieldErrors errors;
  const OrgFields f = FieldsFromProto(p, "org.", errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(f.code, "NJ-1");
  EXPECT_EQ(f.name, "某党支部");
  EXPECT_EQ(f.kind, OrgKind::kBranch);
  EXPECT_TRUE(f.joint);
  EXPECT_EQ(f.domain, OrgDomain::kNonPublicEnterprise);
  EXPECT_EQ(f.region_code, "320102");
  ASSERT_TRUE(f.established.has_value());
  EXPECT_EQ(*f.established, (CivilDate{2001, 2, 3}));
}

TEST(FieldsFromProto, AbsentEstablishedDateStaysAbsent) {
  FieldErrors errors;
  EXPECT_FALSE(FieldsFromProto(ClientOrg(), "org.", errors).established.has_value());
  EXPECT_TRUE(errors.empty());
}

TEST(FieldsFromProto, ReportsUnspecifiedKindAndDomain) {
  v1::Org p = ClientOrg();
  p.set_kind(v1::ORG_KIND_UNSPECIFIED);
  p.set_domain(v1::ORG_DOMAIN_UNSPECIFIED);
  FieldErrors errors;
  FieldsFromProto(p, "org.", errors);
  EXPECT_THAT(FieldsOf(errors), ElementsAre("org.kind", "org.domain"));
  for (const FieldViolation& v : errors.violations()) EXPECT_EQ(v.description, "is required");
}

TEST(FieldsFromProto, ReportsUnknownEnumValues) {
  // Just outside the known ranges (kinds 1..4, domains 1..9), and negative values.
  for (int kind : {5, -1}) {
    for (int domain : {10, -3}) {
      SCOPED_TRACE(testing::Message() << "kind=" << kind << " domain=" << domain);
      v1::Org p = ClientOrg();
      p.set_kind(static_cast<v1::OrgKind>(kind));
      p.set_domain(static_cast<v1::OrgDomain>(domain));
      FieldErrors errors;
      FieldsFromProto(p, "org.", errors);
      ASSERT_THAT(FieldsOf(errors), ElementsAre("org.kind", "org.domain"));
      EXPECT_EQ(errors.violations()[0].description, "is not a known OrgKind");
      EXPECT_EQ(errors.violations()[1].description, "is not a known OrgDomain");
    }
  }
}

TEST(FieldsFromProto, ReportsUnknownEnumValuesFromTheWire) {
  // An unknown enum number sent by a newer client survives proto3 parsing as its number.
  v1::Org sender = ClientOrg();
  sender.set_kind(static_cast<v1::OrgKind>(42));
  v1::Org received;
  ASSERT_TRUE(received.ParseFromString(sender.SerializeAsString()));
  FieldErrors errors;
  FieldsFromProto(received, "org.", errors);
  EXPECT_THAT(FieldsOf(errors), ElementsAre("org.kind"));
}

TEST(FieldsFromProto, AcceptsEdgesOfKnownRanges) {
  for (auto [kind, domain] : {std::pair{v1::ORG_KIND_COMMITTEE, v1::ORG_DOMAIN_VILLAGE},
                              std::pair{v1::ORG_KIND_GROUP, v1::ORG_DOMAIN_OTHER}}) {
    v1::Org p = ClientOrg();
    p.set_kind(kind);
    p.set_domain(domain);
    FieldErrors errors;
    const OrgFields f = FieldsFromProto(p, "org.", errors);
    EXPECT_TRUE(errors.empty());
    EXPECT_EQ(static_cast<int>(f.kind), static_cast<int>(kind));
    EXPECT_EQ(static_cast<int>(f.domain), static_cast<int>(domain));
  }
}

TEST(FieldsFromProto, UsesThePrefix) {
  v1::Org p = ClientOrg();
  p.clear_kind();
  FieldErrors errors;
  FieldsFromProto(p, "", errors);
  EXPECT_THAT(FieldsOf(errors), ElementsAre("kind"));
}

// ---------------------------------------------------------------------------------------------
// ToTimestamp / FromTimestamp: google.protobuf.Timestamp wants 0 <= nanos < 1e9 even before 1970,
// so -1 ns is {seconds -1, nanos 999999999}, not {0, -1}.

TEST(Timestamp, OneNanosecondBeforeEpoch) {
  const google::protobuf::Timestamp ts = ToTimestamp(absl::UnixEpoch() - absl::Nanoseconds(1));
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999999999);
  EXPECT_EQ(FromTimestamp(ts), absl::UnixEpoch() - absl::Nanoseconds(1));
}

TEST(Timestamp, NegativeWithFraction) {
  const google::protobuf::Timestamp ts = ToTimestamp(absl::UnixEpoch() - absl::Milliseconds(1500));
  EXPECT_EQ(ts.seconds(), -2);
  EXPECT_EQ(ts.nanos(), 500000000);
  EXPECT_EQ(FromTimestamp(ts), absl::UnixEpoch() - absl::Milliseconds(1500));
}

TEST(Timestamp, NegativeWholeSeconds) {
  const google::protobuf::Timestamp ts = ToTimestamp(absl::UnixEpoch() - absl::Seconds(2));
  EXPECT_EQ(ts.seconds(), -2);
  EXPECT_EQ(ts.nanos(), 0);
}

TEST(Timestamp, EpochAndAfter) {
  const google::protobuf::Timestamp zero = ToTimestamp(absl::UnixEpoch());
  EXPECT_EQ(zero.seconds(), 0);
  EXPECT_EQ(zero.nanos(), 0);
  const google::protobuf::Timestamp ts = ToTimestamp(absl::UnixEpoch() + absl::Milliseconds(1250));
  EXPECT_EQ(ts.seconds(), 1);
  EXPECT_EQ(ts.nanos(), 250000000);
}

TEST(Timestamp, RoundTripsDatesAcrossTheCentury) {
  for (absl::Time t : {Utc(1921, 7, 1, 0, 0, 0) + absl::Nanoseconds(7),
                       Utc(1949, 10, 1, 7, 0, 0) - absl::Nanoseconds(1),
                       Utc(2099, 12, 31, 23, 59, 59) + absl::Nanoseconds(999999999)}) {
    SCOPED_TRACE(absl::FormatTime(t));
    const google::protobuf::Timestamp ts = ToTimestamp(t);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1000000000);
    EXPECT_EQ(FromTimestamp(ts), t);
  }
}

}  // namespace
}  // namespace dangjian::registry
