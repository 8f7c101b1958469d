// Status helpers shared by every layer: the DJ_RETURN_IF_ERROR / DJ_ASSIGN_OR_RETURN macros, and
// statuses that carry which request fields are wrong (INVALID_ARGUMENT) or which domain rule a
// request breaks (FAILED_PRECONDITION). The details ride in absl::Status payloads, so domain code
// needs no gRPC header; common/grpc_status.h turns them into a grpc::Status.
// Everything here is stateless and thread-safe.
#pragma once

#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DJ_STATUS_CONCAT_INNER(a, b) a##b
#define DJ_STATUS_CONCAT(a, b) DJ_STATUS_CONCAT_INNER(a, b)

// Returns the status of `expr` from the enclosing function unless it is OK. Evaluates it once.
#define DJ_RETURN_IF_ERROR(expr)                \
  do {                                          \
    const ::absl::Status dj_status_ = (expr);   \
    if (!dj_status_.ok()) return dj_status_;    \
  } while (false)

// `lhs = value of expr` if the StatusOr is OK, else returns its status. Evaluates `expr` once.
#define DJ_ASSIGN_OR_RETURN(lhs, expr) \
  DJ_ASSIGN_OR_RETURN_IMPL(DJ_STATUS_CONCAT(dj_statusor_, __LINE__), lhs, expr)
#define DJ_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

namespace dangjian {

// One wrong request field and why.
struct FieldViolation {
  std::string field;
  std::string description;
  bool operator==(const FieldViolation& o) const {
    return field == o.field && description == o.description;
  }
};

// Collects field violations while a handler validates a request.
class FieldErrors {
 public:
  void Add(std::string field, std::string description) {
    violations_.push_back({std::move(field), std::move(description)});
  }
  bool empty() const { return violations_.empty(); }
  const std::vector<FieldViolation>& violations() const { return violations_; }
  // OK when nothing was added, else InvalidArgumentError(violations).
  absl::Status ToStatus() const;

 private:
  std::vector<FieldViolation> violations_;
};

// INVALID_ARGUMENT naming each field; the message lists them as "field: why; field: why".
absl::Status InvalidArgumentError(std::vector<FieldViolation> violations);
inline absl::Status InvalidFieldError(std::string field, std::string description) {
  return InvalidArgumentError({{std::move(field), std::move(description)}});
}

// A broken domain rule: FAILED_PRECONDITION (or `code`), message "[rule] description".
absl::Status RuleViolationError(absl::string_view rule, absl::string_view description,
                                absl::StatusCode code = absl::StatusCode::kFailedPrecondition);

// The field violations a status carries (empty if none).
std::vector<FieldViolation> GetFieldViolations(const absl::Status& status);
// The rule tag a status carries, if any.
std::optional<std::string> GetViolatedRule(const absl::Status& status);

}  // namespace dangjian
