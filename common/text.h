// Checks of the free text that requests carry and people later read: names, reasons, notes,
// request ids. One rule set for every service, so a name refused by one is refused by all:
// strict UTF-8 (RFC 3629), a length in characters (code points, not bytes), and none of the
// characters that hide or disguise text:
//   - C0 and C1 control characters and DEL (NUL cuts the text short in C strings and some
//     databases; the others move terminals' cursors or vanish on display);
//   - the bidirectional controls (U+061C, U+200E-U+200F, U+202A-U+202E, U+2066-U+2069), which
//     can make one org's name display as another's ("Trojan Source");
//   - line and paragraph separators (U+2028, U+2029), which end lines where no one sees it;
//   - invisible format characters (the zero-width space, soft hyphen, word joiner, invisible
//     operators and deprecated format controls U+2060-U+206F, the byte order mark, interlinear
//     annotations, the Unicode tag characters that can smuggle invisible ASCII, Hangul fillers)
//     and noncharacters.
// Zero-width (non-)joiners U+200C/U+200D stay allowed: Arabic-script (Uyghur) and Indic text
// needs them; so do Mongolian's variation selectors and vowel separator (U+180B-U+180F).
// Multi-line text (TextRules::multiline) also takes line feeds, CR LF and tabs.
// Ideographic variation selectors (U+E0100-U+E01EF) stay allowed: rare characters of Chinese
// personal and place names need them. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/status.h"

namespace dangjian {

// Decodes strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) into code
// points (`out` may be null). Returns false at the first invalid sequence.
bool DecodeUtf8(absl::string_view s, std::vector<char32_t>* out);
inline bool IsValidUtf8(absl::string_view s) { return DecodeUtf8(s, nullptr); }

// Why `cp` may not appear in free text, or nullptr if it may. Newline and tab count as controls
// here; multi-line text is checked by ValidateText.
const char* ForbiddenCharacterKind(char32_t cp);

struct TextRules {
  int max_chars = 0;       // at most this many characters (code points)
  bool required = false;   // empty or blank (only spaces, including U+3000) is refused
  bool multiline = false;  // line feeds, CR LF and tabs allowed
};

// Checks `value` of request field `field` and adds at most one violation naming the field and
// why (the first offending character by its position and code point). Returns true when clean.
bool ValidateText(absl::string_view value, const std::string& field, const TextRules& rules,
                  FieldErrors& errors);

}  // namespace dangjian
