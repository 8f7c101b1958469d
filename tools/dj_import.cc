// dj-import: bulk-loads orgs into the registry through one ImportOrgs stream, rows batched per
// message, and prints the registry's reply (received, created, unchanged, failed, the first
// errors), the elapsed time and the rate.
//
//   dj-import --target 127.0.0.1:50051 --token_file T (--csv FILE | --city N --seed S)
//             [--batch 500] [--json]
//   dj-import --city N --seed S --write_csv FILE      writes the generated tree as CSV, no import
//
// The CSV format is in services/registry/dataset/org_csv.h (header code,parent_code,name,kind,
// joint,domain,region_code,established_date). The whole file is checked before anything is sent,
// so a bad line stops the run with its line number and nothing imported. --city generates the
// deterministic city tree of services/registry/dataset/city_tree.h with N orgs.
// Exit status: 0 when every row was created or unchanged; 1 when the registry rejected rows or the
// call failed; 2 on a usage error or a bad CSV file.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/usage.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "services/registry/dataset/city_tree.h"
#include "services/registry/dataset/org_csv.h"
#include "tools/client_files.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "host:port of the registry");
ABSL_FLAG(std::string, token, "", "bearer token (JWT) with the admin or registry.write role");
ABSL_FLAG(std::string, token_file, "", "file holding the bearer token (keeps it out of ps)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "PEM CA bundle: use TLS and verify the server against it (plaintext when empty)");
ABSL_FLAG(std::string, csv, "", "CSV file of orgs to import");
ABSL_FLAG(int, city, 0, "import a generated city tree of this many orgs instead of --csv");
ABSL_FLAG(uint64_t, seed, 1, "seed of the generated city tree");
ABSL_FLAG(int, batch, 500, "rows per stream message (1..10000)");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "deadline of the whole import");
ABSL_FLAG(int, show_errors, 10, "rejected rows to print");
ABSL_FLAG(std::string, write_csv, "", "write the rows (from --city or --csv) here as CSV and exit");
ABSL_FLAG(bool, json, false, "print the outcome as one JSON line");

namespace dangjian::tools {
namespace {

using registry::v1::ImportOrgRow;

struct Input {
  std::vector<ImportOrgRow> rows;
  std::vector<int> lines;  // CSV line of each row, when read from a file
};

absl::StatusOr<Input> LoadInput() {
  const std::string csv = absl::GetFlag(FLAGS_csv);
  const int city = absl::GetFlag(FLAGS_city);
  if (csv.empty() == (city == 0)) {
    return absl::InvalidArgumentError("give exactly one of --csv FILE and --city N");
  }
  Input input;
  if (city != 0) {
    if (city < 1 || city > 10'000'000) {
      return absl::InvalidArgumentError("--city must be 1..10000000");
    }
    registry::dataset::CityTreeOptions options;
    options.org_count = city;
    options.seed = absl::GetFlag(FLAGS_seed);
    input.rows = registry::dataset::GenerateCityTree(options);
    return input;
  }
  auto text = ReadFile(csv);
  if (!text.ok()) return text.status();
  auto parsed = registry::dataset::ParseOrgCsv(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(csv, ": ", parsed.status().message()));
  }
  input.rows.reserve(parsed->size());
  input.lines.reserve(parsed->size());
  for (registry::dataset::OrgCsvRow& row : *parsed) {
    input.rows.push_back(std::move(row.row));
    input.lines.push_back(row.line);
  }
  if (input.rows.empty()) return absl::InvalidArgumentError(absl::StrCat(csv, " has no rows"));
  return input;
}

absl::StatusOr<std::string> LoadToken() {
  std::string token = absl::GetFlag(FLAGS_token);
  const std::string file = absl::GetFlag(FLAGS_token_file);
  if (!file.empty()) {
    auto text = ReadFile(file);
    if (!text.ok()) return text.status();
    token = *text;
  }
  return std::string(absl::StripAsciiWhitespace(token));
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

int Run() {
  auto input = LoadInput();
  if (!input.ok()) {
    std::fprintf(stderr, "dj-import: %s\n", std::string(input.status().message()).c_str());
    return 2;
  }
  const std::string write_csv = absl::GetFlag(FLAGS_write_csv);
  if (!write_csv.empty()) {
    std::ofstream out(write_csv, std::ios::binary);
    out << registry::dataset::FormatOrgCsv(input->rows);
    out.close();
    if (!out) {
      std::fprintf(stderr, "dj-import: writing %s failed\n", write_csv.c_str());
      return 2;
    }
    std::fprintf(stderr, "dj-import: wrote %zu rows to %s\n", input->rows.size(),
                 write_csv.c_str());
    return 0;
  }
  const int batch = absl::GetFlag(FLAGS_batch);
  if (batch < 1 || batch > 10000) {
    std::fprintf(stderr, "dj-import: --batch must be 1..10000\n");
    return 2;
  }
  auto token = LoadToken();
  if (!token.ok()) {
    std::fprintf(stderr, "dj-import: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  auto credentials = ChannelCredentialsFor(absl::GetFlag(FLAGS_tls_ca_file));
  if (!credentials.ok()) {
    std::fprintf(stderr, "dj-import: %s\n", std::string(credentials.status().message()).c_str());
    return 2;
  }
  const std::string target = absl::GetFlag(FLAGS_target);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 * 1024 * 1024);  // a reply may list many rejected rows
  auto channel = grpc::CreateCustomChannel(target, *credentials, args);
  auto stub = registry::v1::OrgRegistry::NewStub(channel);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoNanoseconds(absl::GetFlag(FLAGS_timeout)));
  if (!token->empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", *token));
  registry::v1::ImportOrgsResponse response;
  const auto started = std::chrono::steady_clock::now();
  std::unique_ptr<grpc::ClientWriter<registry::v1::ImportOrgsRequest>> writer =
      stub->ImportOrgs(&context, &response);
  size_t sent = 0;
  while (sent < input->rows.size()) {
    registry::v1::ImportOrgsRequest request;
    const size_t end = std::min(input->rows.size(), sent + static_cast<size_t>(batch));
    for (size_t i = sent; i < end; ++i) *request.add_rows() = input->rows[i];
    // A failed write means the stream is over (the server answered early or the call broke);
    // Finish() tells why.
    if (!writer->Write(request)) break;
    sent = end;
  }
  if (sent == input->rows.size()) writer->WritesDone();
  const grpc::Status status = writer->Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (!status.ok()) {
    std::fprintf(stderr,
                 "dj-import: ImportOrgs failed after %zu of %zu rows sent, %.2f s: %s: %s\n", sent,
                 input->rows.size(), seconds, CodeName(status.error_code()).c_str(),
                 status.error_message().c_str());
    if (absl::GetFlag(FLAGS_json)) {
      nlohmann::json line = {{"ok", false},
                             {"code", CodeName(status.error_code())},
                             {"message", status.error_message()},
                             {"sent", sent},
                             {"seconds", seconds}};
      std::printf("%s\n",
                  line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
    return 1;
  }
  const double rate = seconds > 0 ? static_cast<double>(response.received()) / seconds : 0;
  const int show = std::max(0, absl::GetFlag(FLAGS_show_errors));
  // Where the row came from: the CSV line, or the row's place in the generated tree.
  auto where = [&](int64_t row_number) {
    const size_t index = static_cast<size_t>(row_number - 1);
    if (row_number >= 1 && index < input->lines.size()) {
      return absl::StrCat("row ", row_number, " (line ", input->lines[index], ")");
    }
    return absl::StrCat("row ", row_number);
  };
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json errors = nlohmann::json::array();
    for (int i = 0; i < std::min(show, response.errors_size()); ++i) {
      const registry::v1::ImportRowError& error = response.errors(i);
      errors.push_back({{"row", error.row_number()},
                        {"where", where(error.row_number())},
                        {"code", error.code()},
                        {"field", error.field()},
                        {"rule", error.rule()},
                        {"reason", error.reason()}});
    }
    nlohmann::json line = {{"ok", response.failed() == 0},
                           {"rows", input->rows.size()},
                           {"received", response.received()},
                           {"created", response.created()},
                           {"unchanged", response.unchanged()},
                           {"failed", response.failed()},
                           {"seconds", seconds},
                           {"rows_per_second", rate},
                           {"errors", errors}};
    std::printf("%s\n",
                line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf(
        "received %lld, created %lld, unchanged %lld, failed %lld in %.2f s (%.0f rows/s)\n",
        static_cast<long long>(response.received()), static_cast<long long>(response.created()),
        static_cast<long long>(response.unchanged()), static_cast<long long>(response.failed()),
        seconds, rate);
    for (int i = 0; i < std::min(show, response.errors_size()); ++i) {
      const registry::v1::ImportRowError& error = response.errors(i);
      std::printf("  %s code %s:%s%s%s%s %s\n", where(error.row_number()).c_str(),
                  error.code().c_str(), error.field().empty() ? "" : " field ",
                  error.field().c_str(), error.rule().empty() ? "" : " rule ", error.rule().c_str(),
                  error.reason().c_str());
    }
    if (response.errors_size() > show) {
      std::printf("  ... and %d more\n", response.errors_size() - show);
    }
  }
  if (response.received() != static_cast<int64_t>(input->rows.size())) {
    std::fprintf(stderr, "dj-import: sent %zu rows but the registry received %lld\n",
                 input->rows.size(), static_cast<long long>(response.received()));
    return 1;
  }
  return response.failed() == 0 ? 0 : 1;
}

}  // namespace
}  // namespace dangjian::tools

int main(int argc, char** argv) {
  dangjian::flags::ListOwnFlagsInHelp(__FILE__);
  absl::ParseCommandLine(argc, argv);
  return dangjian::tools::Run();
}
