#include "common/status.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dangjian/common/v1/errors.pb.h"

namespace dangjian {
namespace {

constexpr absl::string_view kBadRequestUrl = "type.googleapis.com/dangjian.common.v1.BadRequest";
constexpr absl::string_view kRuleViolationUrl =
    "type.googleapis.com/dangjian.common.v1.RuleViolation";

}  // namespace

absl::Status FieldErrors::ToStatus() const {
  if (violations_.empty()) return absl::OkStatus();
  return InvalidArgumentError(violations_);
}

absl::Status InvalidArgumentError(std::vector<FieldViolation> violations) {
  common::v1::BadRequest details;
  std::vector<std::string> parts;
  for (const FieldViolation& v : violations) {
    auto* fv = details.add_field_violations();
    fv->set_field(v.field);
    fv->set_description(v.description);
    parts.push_back(absl::StrCat(v.field, ": ", v.description));
  }
  absl::Status status = absl::InvalidArgumentError(absl::StrJoin(parts, "; "));
  status.SetPayload(kBadRequestUrl, absl::Cord(details.SerializeAsString()));
  return status;
}

absl::Status RuleViolationError(absl::string_view rule, absl::string_view description,
                                absl::StatusCode code) {
  common::v1::RuleViolation details;
  details.set_rule(std::string(rule));
  details.set_description(std::string(description));
  absl::Status status(code, absl::StrCat("[", rule, "] ", description));
  status.SetPayload(kRuleViolationUrl, absl::Cord(details.SerializeAsString()));
  return status;
}

std::vector<FieldViolation> GetFieldViolations(const absl::Status& status) {
  std::vector<FieldViolation> out;
  auto payload = status.GetPayload(kBadRequestUrl);
  if (!payload) return out;
  common::v1::BadRequest details;
  if (!details.ParseFromString(std::string(*payload))) return out;
  for (const auto& fv : details.field_violations()) {
    out.push_back({fv.field(), fv.description()});
  }
  return out;
}

std::optional<std::string> GetViolatedRule(const absl::Status& status) {
  auto payload = status.GetPayload(kRuleViolationUrl);
  if (!payload) return std::nullopt;
  common::v1::RuleViolation details;
  if (!details.ParseFromString(std::string(*payload))) return std::nullopt;
  return details.rule();
}

}  // namespace dangjian
