// Page tokens of ListOrgs: opaque to clients, bound to the filters they were issued for, and
// sealed (common/page_token.h) so that a client can neither alter one nor make one up.
// A token holds the last path of the previous page (keyset pagination) and a fingerprint of the
// query; a token replayed with other filters is refused instead of silently skipping rows, and a
// forged or altered one instead of listing from a place of the client's choosing.
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/page_token.h"

namespace dangjian::registry {

inline constexpr int kDefaultPageSize = 100;
inline constexpr int kMaxPageSize = 1000;
inline constexpr int kMaxBatchGet = 1000;

// What ListOrgs' tokens are sealed for: a token of another RPC is refused.
inline constexpr absl::string_view kListOrgsTokenPurpose =
    "dangjian.registry.v1.OrgRegistry/ListOrgs";

// A stable 64-bit fingerprint (FNV-1a) of a canonical text: of a query's filters, of a request.
uint64_t Fingerprint64(absl::string_view canonical_filters);

std::string EncodePageToken(const PageTokenSealer& sealer, uint64_t fingerprint,
                            absl::string_view last_path);
// INVALID_ARGUMENT (field page_token) if not sealed by `sealer` for ListOrgs, altered, malformed,
// or issued for other filters.
absl::StatusOr<std::string> DecodePageToken(const PageTokenSealer& sealer, absl::string_view token,
                                            uint64_t fingerprint);

}  // namespace dangjian::registry
