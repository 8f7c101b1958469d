#include "services/registry/dataset/org_csv.h"

#include <array>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace dangjian::registry::dataset {
namespace {

using registry::v1::ImportOrgRow;
using registry::v1::OrgDomain;
using registry::v1::OrgKind;

constexpr absl::string_view kKindPrefix = "ORG_KIND_";
constexpr absl::string_view kDomainPrefix = "ORG_DOMAIN_";

enum Column { kCode, kParentCode, kName, kKind, kJoint, kDomain, kRegionCode, kDate, kColumns };
constexpr std::array<absl::string_view, kColumns> kColumnNames = {
    "code", "parent_code", "name", "kind", "joint", "domain", "region_code", "established_date"};
// Columns a file may leave out: every row then has the default (not joint, no date).
constexpr bool IsOptional(int column) { return column == kJoint || column == kDate; }

struct Record {
  std::vector<std::string> fields;
  int line = 0;
  bool blank = false;  // a line with nothing on it
};

// Splits RFC 4180 text into records, tracking the line each starts on.
absl::StatusOr<std::vector<Record>> SplitRecords(absl::string_view text) {
  std::vector<Record> records;
  size_t i = 0;
  int line = 1;
  const size_t n = text.size();
  auto at_line_end = [&](size_t at) { return at >= n || text[at] == '\n' || text[at] == '\r'; };
  // Consumes one line end (\n, \r\n or \r) at i, if any.
  auto skip_line_end = [&] {
    if (i < n && text[i] == '\r') ++i;
    if (i < n && text[i] == '\n') ++i;
    ++line;
  };
  while (i < n) {
    Record record;
    record.line = line;
    bool any_quoted = false;
    while (true) {
      std::string field;
      if (i < n && text[i] == '"') {
        any_quoted = true;
        const int quote_line = line;
        ++i;
        while (true) {
          if (i >= n) {
            return absl::InvalidArgumentError(
                absl::StrCat("line ", quote_line, ": a quoted field is never closed"));
          }
          const char c = text[i++];
          if (c == '"') {
            if (i < n && text[i] == '"') {
              field.push_back('"');
              ++i;
              continue;
            }
            break;
          }
          if (c == '\n' || (c == '\r' && (i >= n || text[i] != '\n'))) ++line;
          field.push_back(c);
        }
        if (i < n && text[i] != ',' && !at_line_end(i)) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line, ": text after the closing quote of a field"));
        }
      } else {
        while (i < n && text[i] != ',' && !at_line_end(i)) {
          if (text[i] == '"') {
            return absl::InvalidArgumentError(absl::StrCat(
                "line ", line, ": a quote inside an unquoted field (quote the whole field)"));
          }
          field.push_back(text[i++]);
        }
      }
      record.fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      skip_line_end();
      break;
    }
    record.blank = !any_quoted && record.fields.size() == 1 &&
                   absl::StripAsciiWhitespace(record.fields[0]).empty();
    records.push_back(std::move(record));
  }
  return records;
}

bool IsLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && IsLeapYear(year) ? 29 : kDays[month - 1];
}

// Parses YYYY-MM-DD; nullopt when malformed or not a real day.
std::optional<std::array<int, 3>> ParseDate(absl::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  std::array<int, 3> parts{};
  const std::array<std::pair<size_t, size_t>, 3> spans = {{{0, 4}, {5, 2}, {8, 2}}};
  for (size_t p = 0; p < spans.size(); ++p) {
    int value = 0;
    for (size_t k = 0; k < spans[p].second; ++k) {
      const char c = text[spans[p].first + k];
      if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      value = value * 10 + (c - '0');
    }
    parts[p] = value;
  }
  if (parts[1] < 1 || parts[1] > 12 || parts[2] < 1 || parts[2] > DaysInMonth(parts[0], parts[1])) {
    return std::nullopt;
  }
  return parts;
}

std::string KindChoices() {
  std::vector<std::string> names;
  for (int k = registry::v1::OrgKind_MIN; k <= registry::v1::OrgKind_MAX; ++k) {
    if (k != registry::v1::ORG_KIND_UNSPECIFIED && registry::v1::OrgKind_IsValid(k)) {
      names.push_back(ShortKindName(static_cast<OrgKind>(k)));
    }
  }
  return absl::StrJoin(names, ", ");
}

std::string DomainChoices() {
  std::vector<std::string> names;
  for (int d = registry::v1::OrgDomain_MIN; d <= registry::v1::OrgDomain_MAX; ++d) {
    if (d != registry::v1::ORG_DOMAIN_UNSPECIFIED && registry::v1::OrgDomain_IsValid(d)) {
      names.push_back(ShortDomainName(static_cast<OrgDomain>(d)));
    }
  }
  return absl::StrJoin(names, ", ");
}

absl::Status FieldError(int line, int column, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", line, ", column ", kColumnNames[column], ": ", what));
}

// Maps header names to columns; every required column must be there, once.
absl::StatusOr<std::array<int, kColumns>> ParseHeader(const Record& header) {
  std::array<int, kColumns> index;
  index.fill(-1);
  for (size_t f = 0; f < header.fields.size(); ++f) {
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(header.fields[f]));
    int column = -1;
    for (int c = 0; c < kColumns; ++c) {
      if (kColumnNames[c] == name) column = c;
    }
    if (column < 0) {
      return absl::InvalidArgumentError(absl::StrCat("line ", header.line, ": unknown column \"",
                                                     name, "\" in the header (expected ",
                                                     absl::StrJoin(kColumnNames, ","), ")"));
    }
    if (index[column] >= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", header.line, ": column ", name, " appears twice in the header"));
    }
    index[column] = static_cast<int>(f);
  }
  for (int c = 0; c < kColumns; ++c) {
    if (index[c] < 0 && !IsOptional(c)) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", header.line, ": the header has no column ", kColumnNames[c],
                       " (expected a header line: ", absl::StrJoin(kColumnNames, ","), ")"));
    }
  }
  return index;
}

absl::StatusOr<ImportOrgRow> ParseRow(const Record& record, const std::array<int, kColumns>& index,
                                      size_t header_fields) {
  if (record.fields.size() != header_fields) {
    return absl::InvalidArgumentError(absl::StrCat("line ", record.line, ": ", record.fields.size(),
                                                   " fields, expected ", header_fields,
                                                   " as in the header"));
  }
  auto field = [&](int column) -> absl::string_view {
    if (index[column] < 0) return "";
    return absl::StripAsciiWhitespace(record.fields[static_cast<size_t>(index[column])]);
  };
  ImportOrgRow row;
  if (field(kCode).empty()) return FieldError(record.line, kCode, "empty (a code is required)");
  row.set_code(std::string(field(kCode)));
  row.set_parent_code(std::string(field(kParentCode)));
  if (field(kName).empty()) return FieldError(record.line, kName, "empty (a name is required)");
  row.set_name(std::string(field(kName)));

  std::string kind = absl::AsciiStrToUpper(field(kKind));
  if (!absl::StartsWith(kind, kKindPrefix)) kind = absl::StrCat(kKindPrefix, kind);
  OrgKind parsed_kind;
  if (!registry::v1::OrgKind_Parse(kind, &parsed_kind) ||
      parsed_kind == registry::v1::ORG_KIND_UNSPECIFIED) {
    return FieldError(
        record.line, kKind,
        absl::StrCat("unknown kind \"", field(kKind), "\" (expected one of ", KindChoices(), ")"));
  }
  row.set_kind(parsed_kind);

  std::string domain = absl::AsciiStrToUpper(field(kDomain));
  if (!absl::StartsWith(domain, kDomainPrefix)) domain = absl::StrCat(kDomainPrefix, domain);
  OrgDomain parsed_domain;
  if (!registry::v1::OrgDomain_Parse(domain, &parsed_domain) ||
      parsed_domain == registry::v1::ORG_DOMAIN_UNSPECIFIED) {
    return FieldError(record.line, kDomain,
                      absl::StrCat("unknown domain \"", field(kDomain), "\" (expected one of ",
                                   DomainChoices(), ")"));
  }
  row.set_domain(parsed_domain);

  const std::string joint = absl::AsciiStrToLower(field(kJoint));
  if (joint == "true" || joint == "1" || joint == "yes" || joint == "y") {
    row.set_joint(true);
  } else if (!(joint.empty() || joint == "false" || joint == "0" || joint == "no" ||
               joint == "n")) {
    return FieldError(record.line, kJoint,
                      absl::StrCat("\"", field(kJoint), "\" is not true or false"));
  }

  if (field(kRegionCode).empty()) {
    return FieldError(record.line, kRegionCode, "empty (a 6-digit region code is required)");
  }
  row.set_region_code(std::string(field(kRegionCode)));

  if (!field(kDate).empty()) {
    const auto date = ParseDate(field(kDate));
    if (!date.has_value()) {
      return FieldError(record.line, kDate,
                        absl::StrCat("\"", field(kDate), "\" is not a date YYYY-MM-DD"));
    }
    row.mutable_established_date()->set_year((*date)[0]);
    row.mutable_established_date()->set_month((*date)[1]);
    row.mutable_established_date()->set_day((*date)[2]);
  }
  return row;
}

// Quotes a field when RFC 4180 needs it (or when spaces at its ends would be trimmed on reading;
// they are trimmed anyway, but the quotes show the writer meant them).
std::string CsvField(absl::string_view value) {
  const bool needs_quotes =
      value.find_first_of(",\"\r\n") != absl::string_view::npos ||
      (!value.empty() && (absl::ascii_isspace(value.front()) || absl::ascii_isspace(value.back())));
  if (!needs_quotes) return std::string(value);
  std::string quoted = "\"";
  for (char c : value) {
    if (c == '"') quoted.push_back('"');
    quoted.push_back(c);
  }
  quoted.push_back('"');
  return quoted;
}

}  // namespace

std::string ShortKindName(OrgKind kind) {
  const std::string& name = registry::v1::OrgKind_Name(kind);
  if (name.empty()) return absl::StrCat(static_cast<int>(kind));
  return std::string(absl::StripPrefix(name, kKindPrefix));
}

std::string ShortDomainName(OrgDomain domain) {
  const std::string& name = registry::v1::OrgDomain_Name(domain);
  if (name.empty()) return absl::StrCat(static_cast<int>(domain));
  return std::string(absl::StripPrefix(name, kDomainPrefix));
}

absl::StatusOr<std::vector<OrgCsvRow>> ParseOrgCsv(absl::string_view text) {
  absl::ConsumePrefix(&text, "\xEF\xBB\xBF");  // a UTF-8 byte-order mark, as spreadsheets write
  auto records = SplitRecords(text);
  if (!records.ok()) return records.status();
  auto header = records->begin();
  while (header != records->end() && header->blank) ++header;
  if (header == records->end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the file is empty (expected a header line: ", absl::StrJoin(kColumnNames, ","), ")"));
  }
  auto index = ParseHeader(*header);
  if (!index.ok()) return index.status();
  std::vector<OrgCsvRow> rows;
  rows.reserve(records->size());
  for (auto record = header + 1; record != records->end(); ++record) {
    if (record->blank) continue;
    auto row = ParseRow(*record, *index, header->fields.size());
    if (!row.ok()) return row.status();
    rows.push_back(OrgCsvRow{*std::move(row), record->line});
  }
  return rows;
}

std::string FormatOrgCsv(const std::vector<ImportOrgRow>& rows) {
  std::string out = absl::StrCat(absl::StrJoin(kColumnNames, ","), "\n");
  for (const ImportOrgRow& row : rows) {
    std::string date;
    if (row.has_established_date()) {
      date = absl::StrFormat("%04d-%02d-%02d", row.established_date().year(),
                             row.established_date().month(), row.established_date().day());
    }
    absl::StrAppend(&out, CsvField(row.code()), ",", CsvField(row.parent_code()), ",",
                    CsvField(row.name()), ",", ShortKindName(row.kind()), ",",
                    row.joint() ? "true" : "false", ",", ShortDomainName(row.domain()), ",",
                    CsvField(row.region_code()), ",", date, "\n");
  }
  return out;
}

}  // namespace dangjian::registry::dataset
