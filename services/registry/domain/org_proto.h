// Conversion between the domain Org and its wire form dangjian.registry.v1.Org (protobuf only,
// no gRPC). Used by the handlers and by the cache, which stores orgs in their wire form.
// Thread-safe (stateless).
#pragma once

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "dangjian/registry/v1/registry.pb.h"
#include "services/registry/domain/org.h"

namespace dangjian::registry {

void ToProto(const Org& org, v1::Org* out);
v1::Org ToProto(const Org& org);

// Rebuilds a domain Org from its full wire form (as written by ToProto). The cache uses it; client
// input goes through FieldsFromProto instead, which validates.
Org FromProto(const v1::Org& proto);

// The client-settable fields of `proto`. Kind and domain must be set (not UNSPECIFIED) and known:
// violations are added to `errors` under `prefix` (e.g. "org.").
OrgFields FieldsFromProto(const v1::Org& proto, absl::string_view prefix, FieldErrors& errors);

google::protobuf::Timestamp ToTimestamp(absl::Time t);
absl::Time FromTimestamp(const google::protobuf::Timestamp& ts);

}  // namespace dangjian::registry
