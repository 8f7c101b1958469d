#include "services/registry/domain/org_proto.h"

#include "absl/strings/numbers.h"
#include "services/registry/domain/rules.h"

namespace dangjian::registry {

google::protobuf::Timestamp ToTimestamp(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t seconds = nanos / 1'000'000'000;
  int64_t rem = nanos % 1'000'000'000;
  if (rem < 0) {
    rem += 1'000'000'000;
    --seconds;
  }
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(rem));
  return ts;
}

absl::Time FromTimestamp(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

void ToProto(const Org& org, v1::Org* out) {
  out->Clear();
  out->set_id(org.id);
  out->set_code(org.fields.code);
  out->set_name(org.fields.name);
  out->set_parent_id(org.parent_id);
  out->set_kind(static_cast<v1::OrgKind>(org.fields.kind));
  out->set_joint(org.fields.joint);
  out->set_domain(static_cast<v1::OrgDomain>(org.fields.domain));
  out->set_region_code(org.fields.region_code);
  out->set_status(static_cast<v1::OrgStatus>(org.status));
  if (org.fields.established) {
    auto* d = out->mutable_established_date();
    d->set_year(org.fields.established->year);
    d->set_month(org.fields.established->month);
    d->set_day(org.fields.established->day);
  }
  out->set_depth(org.depth);
  for (int64_t id : org.ancestor_ids()) out->add_ancestor_ids(id);
  out->set_etag(EtagOf(org));
  *out->mutable_create_time() = ToTimestamp(org.create_time);
  *out->mutable_update_time() = ToTimestamp(org.update_time);
  if (org.dissolve_time) *out->mutable_dissolve_time() = ToTimestamp(*org.dissolve_time);
  out->set_dissolve_reason(org.dissolve_reason);
  out->set_revision(org.revision);
}

v1::Org ToProto(const Org& org) {
  v1::Org out;
  ToProto(org, &out);
  return out;
}

Org FromProto(const v1::Org& proto) {
  Org org;
  org.id = proto.id();
  org.parent_id = proto.parent_id();
  org.fields.code = proto.code();
  org.fields.name = proto.name();
  org.fields.kind = static_cast<OrgKind>(proto.kind());
  org.fields.joint = proto.joint();
  org.fields.domain = static_cast<OrgDomain>(proto.domain());
  org.fields.region_code = proto.region_code();
  if (proto.has_established_date()) {
    org.fields.established =
        CivilDate{proto.established_date().year(), proto.established_date().month(),
                  proto.established_date().day()};
  }
  org.status = static_cast<OrgStatus>(proto.status());
  org.depth = proto.depth();
  org.path.assign(proto.ancestor_ids().begin(), proto.ancestor_ids().end());
  org.path.push_back(proto.id());
  // The etag is "<id>-<version>".
  const std::string& etag = proto.etag();
  const size_t dash = etag.find('-');
  // A malformed etag (never written by ToProto) reads as version 0 rather than throwing.
  if (dash == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(etag).substr(dash + 1), &org.version)) {
    org.version = 0;
  }
  org.revision = proto.revision();
  org.create_time = FromTimestamp(proto.create_time());
  org.update_time = FromTimestamp(proto.update_time());
  if (proto.has_dissolve_time()) org.dissolve_time = FromTimestamp(proto.dissolve_time());
  org.dissolve_reason = proto.dissolve_reason();
  return org;
}

OrgFields FieldsFromProto(const v1::Org& proto, absl::string_view prefix, FieldErrors& errors) {
  const std::string p(prefix);
  OrgFields fields;
  fields.code = proto.code();
  fields.name = proto.name();
  if (proto.kind() == v1::ORG_KIND_UNSPECIFIED) {
    errors.Add(p + "kind", "is required");
  } else if (!IsValidKind(proto.kind())) {
    errors.Add(p + "kind", "is not a known OrgKind");
  } else {
    fields.kind = static_cast<OrgKind>(proto.kind());
  }
  if (proto.domain() == v1::ORG_DOMAIN_UNSPECIFIED) {
    errors.Add(p + "domain", "is required");
  } else if (!IsValidDomain(proto.domain())) {
    errors.Add(p + "domain", "is not a known OrgDomain");
  } else {
    fields.domain = static_cast<OrgDomain>(proto.domain());
  }
  fields.joint = proto.joint();
  fields.region_code = proto.region_code();
  if (proto.has_established_date()) {
    fields.established =
        CivilDate{proto.established_date().year(), proto.established_date().month(),
                  proto.established_date().day()};
  }
  return fields;
}

}  // namespace dangjian::registry
