#include "common/grpc_status.h"

#include <string>

#include "common/status.h"
#include "dangjian/common/v1/errors.pb.h"

namespace dangjian {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  if (status.code() == absl::StatusCode::kInternal || status.code() == absl::StatusCode::kUnknown) {
    message = "internal error; the server log has the details under this call's request id";
  }
  common::v1::ErrorStatus details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  std::vector<FieldViolation> fields = GetFieldViolations(status);
  if (!fields.empty()) {
    common::v1::BadRequest bad;
    for (const FieldViolation& v : fields) {
      auto* fv = bad.add_field_violations();
      fv->set_field(v.field);
      fv->set_description(v.description);
    }
    details.add_details()->PackFrom(bad);
  }
  if (std::optional<std::string> rule = GetViolatedRule(status)) {
    common::v1::RuleViolation rv;
    rv.set_rule(*rule);
    const std::string prefix = "[" + *rule + "] ";
    rv.set_description(message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message);
    details.add_details()->PackFrom(rv);
  }
  if (details.details().empty()) return grpc::Status(code, message);
  return grpc::Status(code, message, details.SerializeAsString());
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(status.error_code());
  common::v1::ErrorStatus details;
  if (status.error_details().empty() || !details.ParseFromString(status.error_details())) {
    return absl::Status(code, status.error_message());
  }
  for (const auto& any : details.details()) {
    common::v1::BadRequest bad;
    common::v1::RuleViolation rv;
    if (any.UnpackTo(&bad)) {
      std::vector<FieldViolation> fields;
      for (const auto& fv : bad.field_violations()) fields.push_back({fv.field(), fv.description()});
      return InvalidArgumentError(std::move(fields));
    }
    if (any.UnpackTo(&rv)) return RuleViolationError(rv.rule(), rv.description(), code);
  }
  return absl::Status(code, status.error_message());
}

}  // namespace dangjian
