// Org rows as CSV, the format dj-import reads and writes: a header line naming the columns
// code,parent_code,name,kind,joint,domain,region_code,established_date (any order), then one org
// per line. kind and domain are enum names without their prefix (BRANCH, COMMUNITY); joint is
// true/false (or 1/0, empty = false); established_date is YYYY-MM-DD or empty. Fields follow
// RFC 4180 (quotes around a field with a comma, quote or line break; "" inside quotes). A UTF-8
// byte-order mark and CRLF line ends are accepted; blank lines are skipped.
// Only the format is checked here; the registry checks the rules (kind-parent, unique codes).
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dangjian/registry/v1/registry.pb.h"

namespace dangjian::registry::dataset {

struct OrgCsvRow {
  registry::v1::ImportOrgRow row;
  int line = 0;  // the line of the file the row starts on, from 1 (for error messages)
};

// Parses a whole file. The first error stops parsing and is INVALID_ARGUMENT naming the line, the
// column and what is wrong, e.g. `line 12, column kind: unknown kind "BRANC" (expected ...)`.
absl::StatusOr<std::vector<OrgCsvRow>> ParseOrgCsv(absl::string_view text);

// Formats rows as CSV with the header line; ParseOrgCsv reads it back to the same rows.
std::string FormatOrgCsv(const std::vector<registry::v1::ImportOrgRow>& rows);

// "BRANCH" for ORG_KIND_BRANCH, "COMMUNITY" for ORG_DOMAIN_COMMUNITY.
std::string ShortKindName(registry::v1::OrgKind kind);
std::string ShortDomainName(registry::v1::OrgDomain domain);

}  // namespace dangjian::registry::dataset
