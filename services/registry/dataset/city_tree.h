// A deterministic, seeded generator of a city-sized Party organisation tree, for benchmarks and
// demo data: one city committee (市委) over ~12 district-level committees, over street/town
// committees and general branches, over branches (most orgs; community and village heavy, some
// joint), over groups under some branches. Five levels, the kind rules of the registry obeyed
// ([kind-parent]: a group only under a branch; a branch under a general branch or committee; a
// general branch under a committee; a committee under a committee or at the root), unique codes,
// 6-digit region codes, readable Chinese names, rows ordered parents first.
// Pure functions of their arguments; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "dangjian/registry/v1/registry.pb.h"

namespace dangjian::registry::dataset {

struct CityTreeOptions {
  // Exactly this many rows are generated (at least 1: the city committee alone).
  int org_count = 20000;
  // The same seed always gives the same tree, on any platform.
  uint64_t seed = 1;
};

// The tree as import rows, parents before children (depth-first, pre-order).
std::vector<registry::v1::ImportOrgRow> GenerateCityTree(const CityTreeOptions& options);

}  // namespace dangjian::registry::dataset
