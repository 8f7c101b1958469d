// ValidateText (common/text.h): the one check of free text in requests. Each forbidden range is
// tried at both ends and just outside them; the violation names the field, the code point and its
// position.
#include "common/text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_format.h"

namespace dangjian {
namespace {

using ::testing::HasSubstr;

// UTF-8 of one code point.
std::string U(char32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return out;
}

constexpr TextRules kLine{/*max_chars=*/50};
constexpr TextRules kLong{/*max_chars=*/50, /*required=*/false, /*multiline=*/true};

// The single violation `value` gets, or "" when it is clean.
std::string Check(const std::string& value, const TextRules& rules = kLine) {
  FieldErrors errors;
  const bool ok = ValidateText(value, "note", rules, errors);
  EXPECT_EQ(ok, errors.empty());
  if (errors.empty()) return "";
  EXPECT_EQ(errors.violations().size(), 1u);
  EXPECT_EQ(errors.violations()[0].field, "note");
  return errors.violations()[0].description;
}

// `cp` between two letters is refused, named by its code point at character 2.
void ExpectRefused(char32_t cp, const std::string& kind, const TextRules& rules = kLine) {
  SCOPED_TRACE(absl::StrFormat("U+%04X", static_cast<uint32_t>(cp)));
  const std::string why = Check("a" + U(cp) + "b", rules);
  EXPECT_THAT(why, HasSubstr(absl::StrFormat("U+%04X", static_cast<uint32_t>(cp))));
  EXPECT_THAT(why, HasSubstr(kind));
  EXPECT_THAT(why, HasSubstr("at character 2"));
}

void ExpectAllowed(char32_t cp, const TextRules& rules = kLine) {
  SCOPED_TRACE(absl::StrFormat("U+%04X", static_cast<uint32_t>(cp)));
  EXPECT_EQ(Check("a" + U(cp) + "b", rules), "");
}

TEST(ValidateText, AcceptsOrdinaryChineseAndLatinText) {
  EXPECT_EQ(Check("中共南京市玄武区委员会"), "");
  EXPECT_EQ(Check("Branch No. 3 (joint) — 第三联合党支部"), "");
  EXPECT_EQ(Check(""), "");  // not required by these rules
}

TEST(ValidateText, RefusesNulAndEveryC0ControlInOneLineText) {
  EXPECT_THAT(Check(std::string("before\0after", 12)), HasSubstr("U+0000, a control character"));
  EXPECT_THAT(Check(std::string("before\0after", 12)), HasSubstr("at character 7"));
  for (char32_t cp = 0; cp < 0x20; ++cp) ExpectRefused(cp, "control");
  ExpectAllowed(0x20);
}

TEST(ValidateText, RefusesDelAndC1Controls) {
  ExpectAllowed(0x7E);
  ExpectRefused(0x7F, "control");
  ExpectRefused(0x80, "control");
  ExpectRefused(0x85, "control");  // NEL
  ExpectRefused(0x9F, "control");
  ExpectAllowed(0xA0);
}

TEST(ValidateText, MultilineTextTakesLineFeedsTabsAndCrLfOnly) {
  EXPECT_EQ(Check("line one\nline two\tend", kLong), "");
  EXPECT_EQ(Check("line one\r\nline two", kLong), "");
  EXPECT_THAT(Check("over\rwrite", kLong), HasSubstr("only as CR LF"));
  EXPECT_THAT(Check("ends in CR\r", kLong), HasSubstr("U+000D"));
  ExpectRefused(0x00, "control", kLong);
  ExpectRefused(0x0B, "control", kLong);  // vertical tab
  ExpectRefused(0x1B, "control", kLong);  // escape
  // One-line text takes none of them.
  EXPECT_THAT(Check("line one\nline two"), HasSubstr("U+000A"));
  EXPECT_THAT(Check("a\tb"), HasSubstr("U+0009"));
}

TEST(ValidateText, RefusesBidirectionalControls) {
  ExpectAllowed(0x061B);
  ExpectRefused(0x061C, "bidirectional");  // Arabic letter mark
  ExpectAllowed(0x061D);
  ExpectAllowed(0x200D);
  ExpectRefused(0x200E, "bidirectional");  // LRM
  ExpectRefused(0x200F, "bidirectional");  // RLM
  ExpectAllowed(0x2010);
  ExpectAllowed(0x2027);
  ExpectRefused(0x202A, "bidirectional");  // LRE
  ExpectRefused(0x202E, "bidirectional");  // RLO: "Trojan Source"
  ExpectAllowed(0x202F);                   // narrow no-break space
  ExpectRefused(0x2066, "bidirectional");  // LRI
  ExpectRefused(0x2069, "bidirectional");  // PDI
  ExpectRefused(0x202E, "bidirectional", kLong);
}

TEST(ValidateText, RefusesInvisibleFormatCharactersAndSeparators) {
  ExpectRefused(0x00AD, "invisible");  // soft hyphen
  ExpectRefused(0x200B, "invisible");  // zero-width space
  ExpectAllowed(0x200C);               // ZWNJ, needed by Arabic-script and Indic text
  ExpectRefused(0x2028, "separator");
  ExpectRefused(0x2029, "separator");
  ExpectRefused(0x2060, "invisible");  // word joiner
  ExpectRefused(0x2064, "invisible");  // invisible plus
  ExpectRefused(0x206F, "invisible");  // deprecated format control
  ExpectAllowed(0x2070);
  ExpectRefused(0xFEFF, "invisible");  // byte order mark
  ExpectRefused(0xFFF9, "invisible");  // interlinear annotation
  ExpectRefused(0xFFFB, "invisible");
  ExpectAllowed(0xFFFC);
  ExpectRefused(0x3164, "invisible");   // Hangul filler
  ExpectRefused(0xE0000, "invisible");  // tag characters: invisible ASCII
  ExpectRefused(0xE0041, "invisible");
  ExpectRefused(0xE007F, "invisible");
  ExpectAllowed(0xE0100);  // ideographic variation selectors: rare characters of names
  ExpectAllowed(0x180E);   // Mongolian vowel separator
  ExpectAllowed(0xE000);   // private use: rare characters in older Chinese systems
}

TEST(ValidateText, RefusesNoncharacters) {
  ExpectAllowed(0xFDCF);
  ExpectRefused(0xFDD0, "noncharacter");
  ExpectRefused(0xFDEF, "noncharacter");
  ExpectAllowed(0xFDF0);
  ExpectRefused(0xFFFE, "noncharacter");
  ExpectRefused(0xFFFF, "noncharacter");
  ExpectRefused(0x1FFFF, "noncharacter");
  ExpectRefused(0x10FFFF, "noncharacter");
}

TEST(ValidateText, LengthIsInCharactersAtTheBoundary) {
  std::string fifty;
  for (int i = 0; i < 50; ++i) fifty += "党";
  EXPECT_EQ(Check(fifty), "");
  EXPECT_EQ(Check(fifty + "党"), "is 51 characters; at most 50");
}

TEST(ValidateText, RefusesInvalidUtf8AndBlankRequiredText) {
  EXPECT_EQ(Check("bad \xFF byte"), "is not valid UTF-8");
  EXPECT_EQ(Check(std::string("\xC0\x80", 2)), "is not valid UTF-8");  // overlong NUL
  const TextRules required{/*max_chars=*/10, /*required=*/true};
  FieldErrors errors;
  EXPECT_FALSE(ValidateText(" \u3000 ", "note", required, errors));
  ASSERT_EQ(errors.violations().size(), 1u);
  EXPECT_EQ(errors.violations()[0].description, "is required");
  EXPECT_FALSE(ValidateText("", "note", required, errors));
}

TEST(ValidateText, NamesOnlyTheFirstOffenderOnce) {
  FieldErrors errors;
  EXPECT_FALSE(
      ValidateText("a\x01"
                   "b\x02",
                   "org.name", kLine, errors));
  ASSERT_EQ(errors.violations().size(), 1u);
  EXPECT_EQ(errors.violations()[0].field, "org.name");
  EXPECT_THAT(errors.violations()[0].description, HasSubstr("U+0001"));
}

}  // namespace
}  // namespace dangjian
