// dj-loadgen: closed-loop load on one unary RPC. N calls are kept outstanding over a few
// channels with the callback client API (no thread per call). The client is kept lean so that
// the server, not the client, is what is measured: calls go through gRPC's generic stub with
// raw byte buffers, so no reply is parsed into a message; every reply is still checked (its
// leading id field: the id asked for, the root first in a page) and every --verify_every-th one
// is parsed whole. Every call's latency is recorded, failed calls are counted by code, and the
// client's own CPU time is reported (client_cpu_cores: when it nears the cores the machine has,
// the client is the bottleneck). Prints throughput (successful calls/s), p50/p90/p99/max, the
// mean reply size and errors, one JSON line with --json. Exits 1 when more than
// --max_error_ratio of the measured calls fail (a benchmark of failing calls is worthless), 2 on
// a usage error.
//
//   dj-loadgen --target 127.0.0.1:P --rpc echo|get_org|list_orgs --token T --concurrency 16
//              --duration 5s --warmup 1s [--ids FILE | --id-range a..b] [--root_id R]
//              [--page_size 50] [--reply_bytes 32] [--prime] [--seed S] [--json]
//       The ids are drawn at random from a seed taken from the clock unless --seed is given; the
//       seed is printed, so --seed repeats a run's sequence.
//   dj-loadgen --target 127.0.0.1:P --token T --dump_orgs FILE [--root_id R]
//       writes "id kind parent_id depth code" (tab-separated) for every org ListOrgs returns.
//
// Flag names take '-' or '_' alike (--id-range is --id_range).
#include <google/protobuf/io/coded_stream.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/split_mix.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "echo/echo.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "host:port of the server (plaintext)");
ABSL_FLAG(std::string, rpc, "echo", "echo, get_org or list_orgs");
ABSL_FLAG(std::string, token, "", "bearer token (JWT) sent with every call");
ABSL_FLAG(std::string, token_file, "", "file holding the bearer token (keeps it out of ps)");
ABSL_FLAG(int, concurrency, 16, "calls kept outstanding");
ABSL_FLAG(int, channels, 0, "channels (TCP connections) to spread calls over; 0: min(N, 4)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "measured time");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1), "time before measuring (not recorded)");
ABSL_FLAG(absl::Duration, call_timeout, absl::Seconds(5), "deadline of each call");
ABSL_FLAG(std::string, ids, "",
          "file of org ids, one per line (first column; blank and # lines skipped)");
ABSL_FLAG(std::string, id_range, "", "org ids a..b (inclusive), instead of --ids");
ABSL_FLAG(int64_t, root_id, 0, "list_orgs: subtree root (0: a random id of --ids each call)");
ABSL_FLAG(int, page_size, 50, "list_orgs: page size");
ABSL_FLAG(int, reply_bytes, 32, "echo: reply payload size in bytes");
ABSL_FLAG(bool, prime, false, "get_org: call every id once before the warmup (fills a cache)");
ABSL_FLAG(double, max_error_ratio, 0.001, "exit 1 when more measured calls than this fail");
ABSL_FLAG(uint64_t, seed, 0, "seed of the id choice; 0: from the clock (the seed used is printed)");
ABSL_FLAG(int, verify_every, 16, "parse every Nth reply whole (the rest: their leading id only)");
ABSL_FLAG(bool, json, false, "print one JSON line");
ABSL_FLAG(std::string, dump_orgs, "", "write every org under --root_id to this file and exit");

namespace dangjian::bench {
namespace {

using Clock = std::chrono::steady_clock;
using dangjian::registry::v1::OrgRegistry;

constexpr char kEchoMethod[] = "/dj.bench.echo.Echo/Echo";
constexpr char kGetOrgMethod[] = "/dangjian.registry.v1.OrgRegistry/GetOrg";
constexpr char kListOrgsMethod[] = "/dangjian.registry.v1.OrgRegistry/ListOrgs";

enum class RpcKind { kEcho, kGetOrg, kListOrgs };

// Our own code for a reply that came back OK but is wrong; gRPC's codes end at 16.
constexpr int kBadReply = 17;
constexpr int kCodeSlots = 18;

std::string CodeName(int code) {
  if (code == kBadReply) return "BAD_REPLY";
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

struct Config {
  RpcKind rpc = RpcKind::kEcho;
  std::string authorization;  // "Bearer ..." or empty
  int concurrency = 16;
  absl::Duration call_timeout;
  std::vector<int64_t> ids;
  int64_t root_id = 0;
  int page_size = 50;
  int reply_bytes = 32;
  uint64_t seed = 1;
  int verify_every = 16;
};

// The generic stubs, one per channel.
using Stubs = std::vector<std::unique_ptr<grpc::GenericStub>>;

// CPU time this process has used (user and system, every thread), in seconds.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

// What one phase measured.
struct PhaseResult {
  int64_t calls = 0;   // completed in the window, ok or not
  int64_t errors = 0;  // of those, failed
  std::array<int64_t, kCodeSlots> by_code{};
  std::vector<int64_t> latencies_ns;  // of the successful ones
  int64_t warmup_errors = 0;          // failed calls before the window (not in calls)
  std::string first_error;            // of the measured calls
  std::string first_warmup_error;     // of the calls before the window
  double seconds = 0;                 // length of the window
  int64_t reply_bytes = 0;            // summed over the measured successful calls
  int64_t all_calls = 0;              // completed, warmup included
  double wall_seconds = 0;            // of the whole phase, warmup included
  double cpu_seconds = 0;             // the client's CPU time over the whole phase
};

// One generator per slot, so slots draw ids without sharing state.
using Rng = SplitMix64;

class Phase;

// One outstanding call at a time, re-issued from its own completion until the phase ends.
// Everything a slot touches is its own, so no locks are needed on the hot path; the phase reads
// the slot's figures only after every slot has finished.
class Slot {
 public:
  Slot(Phase& phase, const Config& config, Stubs& stubs, int index);
  void Issue();

  int64_t calls = 0;
  int64_t errors = 0;
  int64_t warmup_errors = 0;
  int64_t all_calls = 0;
  int64_t reply_bytes = 0;
  std::array<int64_t, kCodeSlots> by_code{};
  std::vector<int64_t> latencies_ns;

 private:
  void Done(const grpc::Status& status);
  bool ReplyMatches();
  // The reply parsed whole into its message type: the id, the payload's size, the page's root.
  bool FullReplyMatches();

  Phase& phase_;
  const Config& config_;
  grpc::GenericStub* stub_;
  const char* method_;
  Rng rng_;
  int64_t sequence_ = 0;
  int64_t expected_id_ = 0;
  Clock::time_point started_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::string scratch_;  // the serialised request
  grpc::ByteBuffer request_;
  grpc::ByteBuffer reply_;
  dj::bench::echo::EchoRequest echo_request_;
  registry::v1::GetOrgRequest get_request_;
  registry::v1::ListOrgsRequest list_request_;
};

// A run of all slots: either timed (warmup, then a measured window) or a priming pass that
// calls each id once.
class Phase {
 public:
  // Timed phase.
  Phase(const Config& config, Stubs& stubs, absl::Duration warmup, absl::Duration duration)
      : config_(config), stubs_(stubs), prime_(false), finished_(config.concurrency) {
    const Clock::time_point now = Clock::now();
    window_start_ = now + absl::ToChronoNanoseconds(warmup);
    window_end_ = window_start_ + absl::ToChronoNanoseconds(duration);
  }
  // Priming phase.
  Phase(const Config& config, Stubs& stubs)
      : config_(config), stubs_(stubs), prime_(true), finished_(config.concurrency) {
    window_start_ = Clock::now();
    window_end_ = Clock::time_point::max();
  }

  PhaseResult Run() {
    std::vector<std::unique_ptr<Slot>> slots;
    for (int i = 0; i < config_.concurrency; ++i) {
      slots.push_back(std::make_unique<Slot>(*this, config_, stubs_, i));
    }
    const double cpu_started = ProcessCpuSeconds();
    const Clock::time_point started = Clock::now();
    for (auto& slot : slots) slot->Issue();
    finished_.Wait();
    const Clock::time_point ended = Clock::now();
    PhaseResult result;
    result.cpu_seconds = ProcessCpuSeconds() - cpu_started;
    result.wall_seconds = std::chrono::duration<double>(ended - started).count();
    for (auto& slot : slots) {
      result.reply_bytes += slot->reply_bytes;
      result.all_calls += slot->all_calls;
      result.calls += slot->calls;
      result.errors += slot->errors;
      result.warmup_errors += slot->warmup_errors;
      for (int c = 0; c < kCodeSlots; ++c) result.by_code[c] += slot->by_code[c];
      result.latencies_ns.insert(result.latencies_ns.end(), slot->latencies_ns.begin(),
                                 slot->latencies_ns.end());
    }
    result.seconds = prime_ ? std::chrono::duration<double>(ended - started).count()
                            : std::chrono::duration<double>(window_end_ - window_start_).count();
    absl::MutexLock lock(&mu_);
    result.first_error = first_error_;
    result.first_warmup_error = first_warmup_error_;
    return result;
  }

  // The id for the next call of a slot; false when a priming pass has used every id.
  bool NextId(Rng& rng, int64_t* id) {
    if (prime_) {
      const size_t index = next_index_.fetch_add(1, std::memory_order_relaxed);
      if (index >= config_.ids.size()) return false;
      *id = config_.ids[index];
      return true;
    }
    if (!config_.ids.empty()) *id = config_.ids[rng.Next() % config_.ids.size()];
    return true;
  }
  bool Over(Clock::time_point now) const { return now >= window_end_; }
  bool InWindow(Clock::time_point now) const { return now >= window_start_ && now < window_end_; }
  void NoteError(const grpc::Status& status, absl::string_view detail, bool measured) {
    absl::MutexLock lock(&mu_);
    std::string& first = measured ? first_error_ : first_warmup_error_;
    if (first.empty()) {
      first = absl::StrCat(CodeName(status.error_code()), ": ", status.error_message(), detail);
    }
  }
  // Must be the last thing a slot does: the phase may then destroy it.
  void SlotFinished() { finished_.DecrementCount(); }

 private:
  const Config& config_;
  Stubs& stubs_;
  const bool prime_;
  Clock::time_point window_start_;
  Clock::time_point window_end_;
  std::atomic<size_t> next_index_{0};
  absl::BlockingCounter finished_;
  absl::Mutex mu_;
  std::string first_error_ ABSL_GUARDED_BY(mu_);
  std::string first_warmup_error_ ABSL_GUARDED_BY(mu_);
};

Slot::Slot(Phase& phase, const Config& config, Stubs& stubs, int index)
    : phase_(phase),
      config_(config),
      stub_(stubs[static_cast<size_t>(index) % stubs.size()].get()),
      method_(config.rpc == RpcKind::kEcho     ? kEchoMethod
              : config.rpc == RpcKind::kGetOrg ? kGetOrgMethod
                                               : kListOrgsMethod),
      rng_(config.seed * 1000003 + static_cast<uint64_t>(index)) {
  latencies_ns.reserve(1 << 14);
}

void Slot::Issue() {
  if (phase_.Over(Clock::now()) || !phase_.NextId(rng_, &expected_id_)) {
    phase_.SlotFinished();
    return;
  }
  // A fresh context per call, as gRPC requires; replacing the old one inside its own completion
  // is safe (the call keeps its own reference), and is what gRPC's callback benchmark client does.
  context_ = std::make_unique<grpc::ClientContext>();
  context_->set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(config_.call_timeout));
  if (!config_.authorization.empty()) {
    context_->AddMetadata("authorization", config_.authorization);
  }
  switch (config_.rpc) {
    case RpcKind::kEcho:
      expected_id_ = ++sequence_;
      echo_request_.set_id(expected_id_);
      echo_request_.set_reply_bytes(config_.reply_bytes);
      echo_request_.SerializeToString(&scratch_);
      break;
    case RpcKind::kGetOrg:
      get_request_.set_id(expected_id_);
      get_request_.SerializeToString(&scratch_);
      break;
    case RpcKind::kListOrgs:
      if (config_.root_id != 0) expected_id_ = config_.root_id;
      list_request_.set_root_id(expected_id_);
      list_request_.set_page_size(config_.page_size);
      list_request_.SerializeToString(&scratch_);
      break;
  }
  grpc::Slice slice(scratch_);
  request_ = grpc::ByteBuffer(&slice, 1);
  reply_.Clear();
  started_ = Clock::now();
  stub_->UnaryCall(context_.get(), method_, grpc::StubOptions(), &request_, &reply_,
                   [this](grpc::Status status) { Done(status); });
}

// Every reply leads with the id (field 1; protobuf writes fields in number order): the echo's id,
// the org's id, or in a page the first org's (field 1, a message) id. Reading that is a few
// dozen instructions, where parsing a 50-org page is tens of thousands.
bool Slot::ReplyMatches() {
  grpc::ProtoBufferReader reader(&reply_);
  if (!reader.status().ok()) return false;
  google::protobuf::io::CodedInputStream in(&reader);
  constexpr uint32_t kIdTag = (1 << 3) | 0;        // field 1, varint
  constexpr uint32_t kFirstOrgTag = (1 << 3) | 2;  // field 1, length-delimited
  uint32_t length = 0;
  if (config_.rpc == RpcKind::kListOrgs &&
      (in.ReadTag() != kFirstOrgTag || !in.ReadVarint32(&length))) {
    return false;
  }
  uint64_t id = 0;
  if (in.ReadTag() != kIdTag || !in.ReadVarint64(&id)) return false;
  if (static_cast<int64_t>(id) != expected_id_) return false;
  if (config_.rpc == RpcKind::kEcho && reply_.Length() < static_cast<size_t>(config_.reply_bytes)) {
    return false;
  }
  return true;
}

bool Slot::FullReplyMatches() {
  grpc::ProtoBufferReader reader(&reply_);
  if (!reader.status().ok()) return false;
  switch (config_.rpc) {
    case RpcKind::kEcho: {
      dj::bench::echo::EchoResponse echo;
      return echo.ParseFromZeroCopyStream(&reader) && echo.id() == expected_id_ &&
             echo.payload().size() == static_cast<size_t>(config_.reply_bytes);
    }
    case RpcKind::kGetOrg: {
      registry::v1::Org org;
      return org.ParseFromZeroCopyStream(&reader) && org.id() == expected_id_;
    }
    case RpcKind::kListOrgs: {
      // Tree order: the root comes first on the first page.
      registry::v1::ListOrgsResponse page;
      return page.ParseFromZeroCopyStream(&reader) && page.orgs_size() > 0 &&
             page.orgs(0).id() == expected_id_;
    }
  }
  return false;
}

void Slot::Done(const grpc::Status& status) {
  const Clock::time_point now = Clock::now();
  const bool measured = phase_.InWindow(now);
  ++all_calls;
  int code = status.error_code();
  const size_t reply_size = reply_.Length();
  if (status.ok() &&
      !((all_calls % config_.verify_every == 0 ? FullReplyMatches() : true) && ReplyMatches())) {
    code = kBadReply;
    phase_.NoteError(grpc::Status(grpc::StatusCode::UNKNOWN, "reply does not match the request"),
                     absl::StrCat(" (id ", expected_id_, ")"), measured);
  } else if (!status.ok()) {
    phase_.NoteError(status, absl::StrCat(" (id ", expected_id_, ")"), measured);
  }
  if (!measured && code != grpc::StatusCode::OK) ++warmup_errors;
  if (measured) {
    ++calls;
    ++by_code[code];
    if (code == grpc::StatusCode::OK) {
      reply_bytes += static_cast<int64_t>(reply_size);
      latencies_ns.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - started_).count());
    } else {
      ++errors;
    }
  }
  Issue();
}

// The latency at quantile q (0..1) of sorted samples, in microseconds.
double QuantileUs(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  index = std::min(std::max<size_t>(index, 1), sorted.size()) - 1;
  return static_cast<double>(sorted[index]) / 1000.0;
}

double Round(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

absl::StatusOr<std::vector<int64_t>> LoadIds(const std::string& file, const std::string& range) {
  std::vector<int64_t> ids;
  if (!range.empty()) {
    std::vector<absl::string_view> ends = absl::StrSplit(range, "..");
    int64_t first = 0;
    int64_t last = 0;
    if (ends.size() != 2 || !absl::SimpleAtoi(ends[0], &first) ||
        !absl::SimpleAtoi(ends[1], &last) || first < 1 || last < first ||
        last - first > 10'000'000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--id-range \"", range, "\" is not a..b with 1 <= a <= b"));
    }
    for (int64_t id = first; id <= last; ++id) ids.push_back(id);
    return ids;
  }
  if (file.empty()) return ids;
  std::ifstream in(file);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --ids file ", file));
  std::string line;
  int line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    absl::string_view first = text.substr(0, text.find_first_of(" \t,"));
    int64_t id = 0;
    if (!absl::SimpleAtoi(first, &id) || id < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ":", line_number, ": \"", first, "\" is not an org id"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError(absl::StrCat(file, " holds no ids"));
  return ids;
}

absl::StatusOr<std::string> LoadToken() {
  std::string token = absl::GetFlag(FLAGS_token);
  const std::string file = absl::GetFlag(FLAGS_token_file);
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read --token_file ", file));
    std::getline(in, token);
  }
  return std::string(absl::StripAsciiWhitespace(token));
}

std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(const std::string& target, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < count; ++i) {
    grpc::ChannelArguments args;
    // Without these, channels to one target share one subchannel, i.e. one TCP connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("dj.loadgen.channel", i);
    args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

// --dump_orgs: pages through ListOrgs and writes one line per org.
int DumpOrgs(const std::string& target, const std::string& authorization, int64_t root_id,
             const std::string& file) {
  auto channel = MakeChannels(target, 1)[0];
  auto stub = OrgRegistry::NewStub(channel);
  std::ofstream out(file);
  if (!out) {
    std::fprintf(stderr, "dj-loadgen: cannot write %s\n", file.c_str());
    return 1;
  }
  registry::v1::ListOrgsRequest request;
  request.set_root_id(root_id);
  request.set_page_size(1000);
  int64_t count = 0;
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!authorization.empty()) context.AddMetadata("authorization", authorization);
    registry::v1::ListOrgsResponse response;
    const grpc::Status status = stub->ListOrgs(&context, request, &response);
    if (!status.ok()) {
      std::fprintf(stderr, "dj-loadgen: ListOrgs failed after %lld orgs: %s: %s\n",
                   static_cast<long long>(count), CodeName(status.error_code()).c_str(),
                   status.error_message().c_str());
      return 1;
    }
    for (const registry::v1::Org& org : response.orgs()) {
      out << org.id() << '\t' << registry::v1::OrgKind_Name(org.kind()) << '\t' << org.parent_id()
          << '\t' << org.depth() << '\t' << org.code() << '\n';
      ++count;
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  out.close();
  if (!out) {
    std::fprintf(stderr, "dj-loadgen: writing %s failed\n", file.c_str());
    return 1;
  }
  std::fprintf(stderr, "dj-loadgen: wrote %lld orgs to %s\n", static_cast<long long>(count),
               file.c_str());
  return 0;
}

nlohmann::json ErrorsByCode(const PhaseResult& result) {
  nlohmann::json by_code = nlohmann::json::object();
  for (int c = 1; c < kCodeSlots; ++c) {
    if (result.by_code[c] > 0) by_code[CodeName(c)] = result.by_code[c];
  }
  return by_code;
}

int Run() {
  auto token = LoadToken();
  if (!token.ok()) {
    std::fprintf(stderr, "dj-loadgen: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  Config config;
  config.authorization = token->empty() ? "" : absl::StrCat("Bearer ", *token);
  const std::string target = absl::GetFlag(FLAGS_target);
  if (!absl::GetFlag(FLAGS_dump_orgs).empty()) {
    return DumpOrgs(target, config.authorization, absl::GetFlag(FLAGS_root_id),
                    absl::GetFlag(FLAGS_dump_orgs));
  }

  const std::string rpc = absl::GetFlag(FLAGS_rpc);
  if (rpc == "echo") {
    config.rpc = RpcKind::kEcho;
  } else if (rpc == "get_org") {
    config.rpc = RpcKind::kGetOrg;
  } else if (rpc == "list_orgs") {
    config.rpc = RpcKind::kListOrgs;
  } else {
    std::fprintf(stderr, "dj-loadgen: --rpc must be echo, get_org or list_orgs, not \"%s\"\n",
                 rpc.c_str());
    return 2;
  }
  config.concurrency = absl::GetFlag(FLAGS_concurrency);
  config.call_timeout = absl::GetFlag(FLAGS_call_timeout);
  config.root_id = absl::GetFlag(FLAGS_root_id);
  config.page_size = absl::GetFlag(FLAGS_page_size);
  config.reply_bytes = absl::GetFlag(FLAGS_reply_bytes);
  config.seed = absl::GetFlag(FLAGS_seed);
  if (config.seed == 0) {
    // From the clock, so repeated runs do not draw the same ids (which would flatter a cache).
    config.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now())) % 1'000'000'000 + 1;
  }
  config.verify_every = absl::GetFlag(FLAGS_verify_every);
  if (config.verify_every < 1) {
    std::fprintf(stderr, "dj-loadgen: --verify_every must be >= 1\n");
    return 2;
  }
  auto ids = LoadIds(absl::GetFlag(FLAGS_ids), absl::GetFlag(FLAGS_id_range));
  if (!ids.ok()) {
    std::fprintf(stderr, "dj-loadgen: %s\n", std::string(ids.status().message()).c_str());
    return 2;
  }
  config.ids = *std::move(ids);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration warmup = absl::GetFlag(FLAGS_warmup);
  if (config.concurrency < 1 || config.concurrency > 10000) {
    std::fprintf(stderr, "dj-loadgen: --concurrency must be 1..10000\n");
    return 2;
  }
  if (duration <= absl::ZeroDuration() || warmup < absl::ZeroDuration()) {
    std::fprintf(stderr, "dj-loadgen: --duration must be > 0 and --warmup >= 0\n");
    return 2;
  }
  if (config.rpc == RpcKind::kGetOrg && config.ids.empty()) {
    std::fprintf(stderr, "dj-loadgen: get_org needs --ids FILE or --id-range a..b\n");
    return 2;
  }
  if (config.rpc == RpcKind::kListOrgs && config.root_id == 0 && config.ids.empty()) {
    std::fprintf(stderr, "dj-loadgen: list_orgs needs --root_id, --ids or --id-range\n");
    return 2;
  }
  const bool prime = absl::GetFlag(FLAGS_prime);
  if (prime && config.ids.empty()) {
    std::fprintf(stderr, "dj-loadgen: --prime needs --ids or --id-range\n");
    return 2;
  }

  int channel_count = absl::GetFlag(FLAGS_channels);
  if (channel_count <= 0) channel_count = std::min(config.concurrency, 4);
  const auto channels = MakeChannels(target, channel_count);
  Stubs stubs;
  for (const auto& channel : channels) {
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      std::fprintf(stderr, "dj-loadgen: cannot connect to %s\n", target.c_str());
      return 1;
    }
    stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  }

  PhaseResult primed;
  if (prime) primed = Phase(config, stubs).Run();
  PhaseResult result = Phase(config, stubs, warmup, duration).Run();
  std::sort(result.latencies_ns.begin(), result.latencies_ns.end());

  const int64_t ok_calls = result.calls - result.errors;
  const double throughput = result.seconds > 0 ? static_cast<double>(ok_calls) / result.seconds : 0;
  const double error_ratio =
      result.calls > 0 ? static_cast<double>(result.errors) / static_cast<double>(result.calls) : 1;
  const double prime_error_ratio =
      primed.calls > 0 ? static_cast<double>(primed.errors) / static_cast<double>(primed.calls) : 0;
  double mean_us = 0;
  for (int64_t ns : result.latencies_ns) mean_us += static_cast<double>(ns) / 1000.0;
  if (!result.latencies_ns.empty()) mean_us /= static_cast<double>(result.latencies_ns.size());

  nlohmann::json line = {
      {"rpc", rpc},
      {"target", target},
      {"concurrency", config.concurrency},
      {"channels", channel_count},
      {"seconds", Round(result.seconds, 3)},
      {"calls", result.calls},
      {"errors", result.errors},
      {"throughput", Round(throughput, 1)},
      {"p50_us", Round(QuantileUs(result.latencies_ns, 0.50), 1)},
      {"p90_us", Round(QuantileUs(result.latencies_ns, 0.90), 1)},
      {"p99_us", Round(QuantileUs(result.latencies_ns, 0.99), 1)},
      {"max_us", Round(QuantileUs(result.latencies_ns, 1.0), 1)},
      {"mean_us", Round(mean_us, 1)},
      {"errors_by_code", ErrorsByCode(result)},
      {"seed", config.seed},
      {"reply_bytes_mean",
       ok_calls > 0
           ? Round(static_cast<double>(result.reply_bytes) / static_cast<double>(ok_calls), 1)
           : 0.0},
      // The client's own CPU: cores busy over the phase, and microseconds per call.
      {"client_cpu_cores",
       result.wall_seconds > 0 ? Round(result.cpu_seconds / result.wall_seconds, 3) : 0.0},
      {"client_cpu_us_per_call",
       result.all_calls > 0
           ? Round(result.cpu_seconds * 1e6 / static_cast<double>(result.all_calls), 2)
           : 0.0},
  };
  if (config.rpc == RpcKind::kListOrgs) {
    line["page_size"] = config.page_size;
    line["root_id"] = config.root_id;
  }
  if (prime) {
    line["prime_calls"] = primed.calls;
    line["prime_errors"] = primed.errors;
    line["prime_seconds"] = Round(primed.seconds, 3);
  }
  const std::string first_error =
      !result.first_error.empty() ? result.first_error : primed.first_error;
  if (!first_error.empty()) line["first_error"] = first_error;
  if (result.warmup_errors > 0) {
    line["warmup_errors"] = result.warmup_errors;
    line["first_warmup_error"] = result.first_warmup_error;
  }

  const double max_error_ratio = absl::GetFlag(FLAGS_max_error_ratio);
  const bool failed =
      result.calls == 0 || error_ratio > max_error_ratio || prime_error_ratio > max_error_ratio;
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n",
                line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf(
        "%s x%d over %d channel(s), %.1f s: %.0f calls/s, p50 %.0f us, p90 %.0f us, "
        "p99 %.0f us, max %.0f us; %lld of %lld calls failed; seed %llu; replies %.0f bytes; "
        "client CPU %.2f cores\n",
        rpc.c_str(), config.concurrency, channel_count, result.seconds, throughput,
        QuantileUs(result.latencies_ns, 0.5), QuantileUs(result.latencies_ns, 0.9),
        QuantileUs(result.latencies_ns, 0.99), QuantileUs(result.latencies_ns, 1.0),
        static_cast<long long>(result.errors), static_cast<long long>(result.calls),
        static_cast<unsigned long long>(config.seed), line["reply_bytes_mean"].get<double>(),
        line["client_cpu_cores"].get<double>());
    if (prime) {
      std::printf("primed %lld ids in %.1f s, %lld failed\n", static_cast<long long>(primed.calls),
                  primed.seconds, static_cast<long long>(primed.errors));
    }
    if (!first_error.empty()) std::printf("first error: %s\n", first_error.c_str());
    if (result.warmup_errors > 0) {
      std::printf("%lld calls failed during the warmup (not measured); first: %s\n",
                  static_cast<long long>(result.warmup_errors), result.first_warmup_error.c_str());
    }
  }
  if (failed) {
    std::fprintf(
        stderr, "dj-loadgen: %s: %lld of %lld measured calls failed (more than %.3g%%)%s%s\n",
        rpc.c_str(), static_cast<long long>(result.errors), static_cast<long long>(result.calls),
        max_error_ratio * 100, first_error.empty() ? "" : "; first: ", first_error.c_str());
    return 1;
  }
  return 0;
}

// absl flags are C identifiers; accept --id-range for --id_range (the name part only).
std::vector<std::string> NormaliseFlagNames(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string& arg = args[i];
    if (arg == "--") break;
    if (arg.size() < 3 || arg[0] != '-' || arg[1] != '-') continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
  }
  return args;
}

}  // namespace
}  // namespace dangjian::bench

int main(int argc, char** argv) {
  std::vector<std::string> args = dangjian::bench::NormaliseFlagNames(argc, argv);
  std::vector<char*> arg_pointers;
  for (std::string& arg : args) arg_pointers.push_back(arg.data());
  absl::ParseCommandLine(static_cast<int>(arg_pointers.size()), arg_pointers.data());
  return dangjian::bench::Run();
}
