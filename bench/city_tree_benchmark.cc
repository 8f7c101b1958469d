// Micro-benchmarks of the data side of an import: generating the city tree, writing it as CSV and
// reading it back (what dj-import spends before the first row reaches the registry).
#include <benchmark/benchmark.h>

#include "services/registry/dataset/city_tree.h"
#include "services/registry/dataset/org_csv.h"

namespace dangjian::registry::dataset {
namespace {

std::vector<registry::v1::ImportOrgRow> Tree(int64_t count) {
  CityTreeOptions options;
  options.org_count = static_cast<int>(count);
  return GenerateCityTree(options);
}

void BM_GenerateCityTree(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(Tree(state.range(0)));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_GenerateCityTree)->Arg(20000)->Unit(benchmark::kMillisecond);

void BM_FormatOrgCsv(benchmark::State& state) {
  const auto rows = Tree(state.range(0));
  for (auto _ : state) benchmark::DoNotOptimize(FormatOrgCsv(rows));
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_FormatOrgCsv)->Arg(20000)->Unit(benchmark::kMillisecond);

void BM_ParseOrgCsv(benchmark::State& state) {
  const std::string text = FormatOrgCsv(Tree(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(ParseOrgCsv(text));
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_ParseOrgCsv)->Arg(20000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dangjian::registry::dataset

BENCHMARK_MAIN();
