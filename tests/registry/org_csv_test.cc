#include "services/registry/dataset/org_csv.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "services/registry/dataset/city_tree.h"

namespace dangjian::registry::dataset {
namespace {

using ::testing::HasSubstr;

constexpr char kHeader[] = "code,parent_code,name,kind,joint,domain,region_code,established_date\n";

std::string ErrorOf(const std::string& text) {
  auto rows = ParseOrgCsv(text);
  if (rows.ok()) return "parsed";
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(rows.status().message());
}

TEST(OrgCsv, ParsesAWellFormedRow) {
  auto rows = ParseOrgCsv(std::string(kHeader) +
                          "C1-01,C1,玄武区红山街道第三社区党支部,BRANCH,true,COMMUNITY,320102,"
                          "2019-07-01\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  const auto& row = (*rows)[0].row;
  EXPECT_EQ((*rows)[0].line, 2);
  EXPECT_EQ(row.code(), "C1-01");
  EXPECT_EQ(row.parent_code(), "C1");
  EXPECT_EQ(row.name(), "玄武区红山街道第三社区党支部");
  EXPECT_EQ(row.kind(), registry::v1::ORG_KIND_BRANCH);
  EXPECT_TRUE(row.joint());
  EXPECT_EQ(row.domain(), registry::v1::ORG_DOMAIN_COMMUNITY);
  EXPECT_EQ(row.region_code(), "320102");
  EXPECT_EQ(row.established_date().year(), 2019);
  EXPECT_EQ(row.established_date().month(), 7);
  EXPECT_EQ(row.established_date().day(), 1);
}

TEST(OrgCsv, AcceptsPrefixedEnumsEmptyDateAndAnyColumnOrder) {
  auto rows = ParseOrgCsv(
      "name,code,parent_code,region_code,domain,kind\n"
      "市委,C1,,320100,ORG_DOMAIN_OTHER,org_kind_committee\n");
  ASSERT_TRUE(rows.ok()) << rows.status();
  const auto& row = (*rows)[0].row;
  EXPECT_EQ(row.kind(), registry::v1::ORG_KIND_COMMITTEE);
  EXPECT_EQ(row.domain(), registry::v1::ORG_DOMAIN_OTHER);
  EXPECT_FALSE(row.joint());
  EXPECT_FALSE(row.has_established_date());
  EXPECT_EQ(row.parent_code(), "");
}

TEST(OrgCsv, HandlesQuotesBomCrlfAndBlankLines) {
  auto rows = ParseOrgCsv(
      "\xEF\xBB\xBF"
      "code,parent_code,name,kind,joint,domain,region_code,established_date\r\n"
      "\r\n"
      "C1,,\"中共\"\"南京\"\",市委\",COMMITTEE,false,OTHER,320100,\r\n"
      "C2,C1,\"two\nlines\",COMMITTEE,0,OTHER,320100,\r\n"
      "C3,C1,last,COMMITTEE,no,OTHER,320100,");
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].row.name(), "中共\"南京\",市委");
  EXPECT_EQ((*rows)[0].line, 3);
  EXPECT_EQ((*rows)[1].row.name(), "two\nlines");
  EXPECT_EQ((*rows)[1].line, 4);
  EXPECT_EQ((*rows)[2].line, 6);  // the quoted line break counts
}

TEST(OrgCsv, RejectsAnUnknownKindNamingLineAndColumn) {
  const std::string error = ErrorOf(
      std::string(kHeader) + "C1,,a,COMMITTEE,,OTHER,320100,\nC2,C1,b,BRANC,,OTHER,320100,\n");
  EXPECT_THAT(error, HasSubstr("line 3, column kind"));
  EXPECT_THAT(error, HasSubstr("\"BRANC\""));
  EXPECT_THAT(error, HasSubstr("GENERAL_BRANCH"));
}

TEST(OrgCsv, RejectsAnUnknownDomain) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,COMMITTEE,,FARM,320100,\n"),
              HasSubstr("line 2, column domain: unknown domain \"FARM\""));
}

TEST(OrgCsv, RejectsUnspecifiedEnums) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,UNSPECIFIED,,OTHER,320100,\n"),
              HasSubstr("column kind"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,BRANCH,,,320100,\n"),
              HasSubstr("column domain"));
}

TEST(OrgCsv, RejectsBadDates) {
  for (const char* date : {"2019-7-1", "2019-02-30", "2019-13-01", "20190701", "2019/07/01"}) {
    EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,COMMITTEE,,OTHER,320100," + date + "\n"),
                HasSubstr("line 2, column established_date"))
        << date;
  }
  EXPECT_EQ(ErrorOf(std::string(kHeader) + "C1,,a,COMMITTEE,,OTHER,320100,2020-02-29\n"), "parsed");
}

TEST(OrgCsv, RejectsABadJointValue) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,BRANCH,maybe,OTHER,320100,\n"),
              HasSubstr("line 2, column joint"));
}

TEST(OrgCsv, RejectsAWrongNumberOfFields) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,BRANCH,,OTHER,320100\n"),
              HasSubstr("line 2: 7 fields, expected 8"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,BRANCH,,OTHER,320100,,extra\n"),
              HasSubstr("line 2: 9 fields, expected 8"));
}

TEST(OrgCsv, RejectsMissingRequiredValues) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + ",,a,BRANCH,,OTHER,320100,\n"),
              HasSubstr("column code: empty"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,,BRANCH,,OTHER,320100,\n"),
              HasSubstr("column name: empty"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a,BRANCH,,OTHER,,\n"),
              HasSubstr("column region_code: empty"));
}

TEST(OrgCsv, RejectsABadHeader) {
  EXPECT_THAT(ErrorOf("C1,,a,BRANCH,,OTHER,320100,\n"), HasSubstr("line 1: unknown column \"c1\""));
  EXPECT_THAT(ErrorOf("code,parent_code,name,kind,domain\n"),
              HasSubstr("the header has no column region_code"));
  EXPECT_THAT(ErrorOf("code,code,parent_code,name,kind,domain,region_code\n"),
              HasSubstr("column code appears twice"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("the file is empty"));
}

TEST(OrgCsv, RejectsBrokenQuoting) {
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,\"unclosed,BRANCH,,OTHER,320100,\n"),
              HasSubstr("line 2: a quoted field is never closed"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,\"a\"b,BRANCH,,OTHER,320100,\n"),
              HasSubstr("line 2: text after the closing quote"));
  EXPECT_THAT(ErrorOf(std::string(kHeader) + "C1,,a\"b,BRANCH,,OTHER,320100,\n"),
              HasSubstr("line 2: a quote inside an unquoted field"));
}

TEST(OrgCsv, FormatThenParseGivesTheSameRows) {
  CityTreeOptions options;
  options.org_count = 3000;
  options.seed = 5;
  auto tree = GenerateCityTree(options);
  tree[5].set_name("name, with \"quotes\"");  // needs quoting
  auto parsed = ParseOrgCsv(FormatOrgCsv(tree));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), tree.size());
  for (size_t i = 0; i < tree.size(); ++i) {
    ASSERT_EQ((*parsed)[i].row.SerializeAsString(), tree[i].SerializeAsString()) << "row " << i;
    ASSERT_EQ((*parsed)[i].line, static_cast<int>(i) + 2);
  }
}

TEST(OrgCsv, ShortNamesDropThePrefix) {
  EXPECT_EQ(ShortKindName(registry::v1::ORG_KIND_GENERAL_BRANCH), "GENERAL_BRANCH");
  EXPECT_EQ(ShortDomainName(registry::v1::ORG_DOMAIN_NON_PUBLIC_ENTERPRISE),
            "NON_PUBLIC_ENTERPRISE");
}

}  // namespace
}  // namespace dangjian::registry::dataset
