#include "services/registry/domain/paging.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace dangjian::registry {

uint64_t Fingerprint64(absl::string_view canonical_filters) {
  uint64_t hash = 14695981039346656037ULL;
  for (char c : canonical_filters) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

// The sealed payload is "<hex fingerprint>:<last path>".
std::string EncodePageToken(const PageTokenSealer& sealer, uint64_t fingerprint,
                            absl::string_view last_path) {
  return sealer.Seal(kListOrgsTokenPurpose, absl::StrCat(absl::Hex(fingerprint), ":", last_path));
}

absl::StatusOr<std::string> DecodePageToken(const PageTokenSealer& sealer, absl::string_view token,
                                            uint64_t fingerprint) {
  DJ_ASSIGN_OR_RETURN(std::string raw, sealer.Open(kListOrgsTokenPurpose, token));
  // Sealed by us, so well formed unless a bug wrote it: checked all the same.
  const size_t colon = raw.find(':');
  uint64_t got = 0;
  if (colon == std::string::npos ||
      !absl::SimpleHexAtoi(absl::string_view(raw).substr(0, colon), &got)) {
    return InvalidFieldError("page_token", "is not a token this service issued");
  }
  if (got != fingerprint) {
    return InvalidFieldError("page_token",
                             "was issued for a query with other filters; send the same filters");
  }
  std::string path = raw.substr(colon + 1);
  if (path.empty() || path.front() != '/') {
    return InvalidFieldError("page_token", "is not a token this service issued");
  }
  return path;
}

}  // namespace dangjian::registry
