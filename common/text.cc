#include "common/text.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dangjian {
namespace {

// ASCII whitespace and the ideographic (full-width) space common in Chinese input.
bool IsBlank(char32_t cp) { return cp == ' ' || cp == 0x3000 || (cp >= 0x09 && cp <= 0x0D); }

bool InRange(char32_t cp, char32_t first, char32_t last) { return cp >= first && cp <= last; }

}  // namespace

bool DecodeUtf8(absl::string_view s, std::vector<char32_t>* out) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len;
    char32_t cp;
    char32_t min;
    if (c < 0x80) {
      len = 1, cp = c, min = 0;
    } else if ((c >> 5) == 0x6) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c >> 4) == 0xE) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c >> 3) == 0x1E) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    if (out != nullptr) out->push_back(cp);
    i += len;
  }
  return true;
}

const char* ForbiddenCharacterKind(char32_t cp) {
  if (cp < 0x20 || InRange(cp, 0x7F, 0x9F)) return "a control character";
  if (cp == 0x061C || InRange(cp, 0x200E, 0x200F) || InRange(cp, 0x202A, 0x202E) ||
      InRange(cp, 0x2066, 0x2069)) {
    return "a bidirectional control, which makes text display in another order than it is "
           "stored";
  }
  if (InRange(cp, 0x2028, 0x2029)) return "a line or paragraph separator";
  // Zero-width joiners (U+200C, U+200D) are left alone: Arabic-script (Uyghur) and Indic text
  // needs them; so are the Mongolian variation selectors and vowel separator (U+180B-U+180F).
  if (cp == 0x00AD || cp == 0x034F || cp == 0x200B || InRange(cp, 0x2060, 0x206F) || cp == 0xFEFF ||
      InRange(cp, 0xFFF9, 0xFFFB) || InRange(cp, 0xE0000, 0xE007F) || cp == 0x115F ||
      cp == 0x1160 || cp == 0x3164 || cp == 0xFFA0) {
    return "an invisible format character";
  }
  if (InRange(cp, 0xFDD0, 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) return "a noncharacter";
  return nullptr;
}

bool ValidateText(absl::string_view value, const std::string& field, const TextRules& rules,
                  FieldErrors& errors) {
  std::vector<char32_t> cps;
  if (!DecodeUtf8(value, &cps)) {
    errors.Add(field, "is not valid UTF-8");
    return false;
  }
  if (rules.required && std::all_of(cps.begin(), cps.end(), IsBlank)) {
    errors.Add(field, "is required");
    return false;
  }
  if (cps.size() > static_cast<size_t>(rules.max_chars)) {
    errors.Add(field, absl::StrCat("is ", cps.size(), " characters; at most ", rules.max_chars));
    return false;
  }
  for (size_t i = 0; i < cps.size(); ++i) {
    const char32_t cp = cps[i];
    if (rules.multiline &&
        (cp == '\n' || cp == '\t' || (cp == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n'))) {
      continue;
    }
    const char* kind = ForbiddenCharacterKind(cp);
    if (kind == nullptr) continue;
    errors.Add(field, absl::StrFormat("contains U+%04X, %s, at character %d; it is not allowed%s",
                                      static_cast<uint32_t>(cp), kind, i + 1,
                                      rules.multiline && cp == '\r' ? " (only as CR LF)" : ""));
    return false;
  }
  return true;
}

}  // namespace dangjian
