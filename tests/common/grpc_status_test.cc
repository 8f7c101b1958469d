// The absl::Status <-> grpc::Status mapping of common/grpc_status.h: what a caller of our services
// sees, and what our own clients recover, including across a real call on the wire.
#include "common/grpc_status.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"

namespace dangjian {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

TEST(GrpcStatusTest, Ok_MapsToOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(GrpcStatusTest, InvalidArgument_FieldViolationsSurviveRoundTrip) {
  const absl::Status original = InvalidArgumentError(
      {{"org.name", "must not be empty"}, {"org.parent_id", "must be positive"}});

  const grpc::Status on_wire = ToGrpcStatus(original);
  EXPECT_EQ(on_wire.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(on_wire.error_message(), original.message());
  EXPECT_FALSE(on_wire.error_details().empty());

  const absl::Status back = FromGrpcStatus(on_wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(back.message(), original.message());
  EXPECT_THAT(GetFieldViolations(back),
              ElementsAre(FieldViolation{"org.name", "must not be empty"},
                          FieldViolation{"org.parent_id", "must be positive"}));
}

TEST(GrpcStatusTest, RuleViolation_RuleAndCodeSurviveRoundTrip) {
  const absl::Status original =
      RuleViolationError("branch-min-members", "a branch needs at least 3 full members");

  const grpc::Status on_wire = ToGrpcStatus(original);
  EXPECT_EQ(on_wire.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  const absl::Status back = FromGrpcStatus(on_wire);
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(back.message(), "[branch-min-members] a branch needs at least 3 full members");
  EXPECT_THAT(GetViolatedRule(back), Optional(std::string("branch-min-members")));
}

TEST(GrpcStatusTest, RuleViolation_KeepsAnExplicitCode) {
  const absl::Status original =
      RuleViolationError("term-length", "the term ended", absl::StatusCode::kOutOfRange);
  const absl::Status back = FromGrpcStatus(ToGrpcStatus(original));
  EXPECT_EQ(back.code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(GetViolatedRule(back), Optional(std::string("term-length")));
}

TEST(GrpcStatusTest, Internal_MessageIsReplaced) {
  const absl::Status original =
      absl::InternalError("ERROR: relation \"orgs\" does not exist on host db-7.internal");
  const grpc::Status on_wire = ToGrpcStatus(original);
  EXPECT_EQ(on_wire.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(on_wire.error_message(), Not(HasSubstr("orgs")));
  EXPECT_THAT(on_wire.error_message(), Not(HasSubstr("db-7")));
  EXPECT_FALSE(on_wire.error_message().empty());
}

TEST(GrpcStatusTest, Unknown_MessageIsReplaced) {
  const grpc::Status on_wire = ToGrpcStatus(absl::UnknownError("std::bad_alloc in Foo::Bar"));
  EXPECT_EQ(on_wire.error_code(), grpc::StatusCode::UNKNOWN);
  EXPECT_THAT(on_wire.error_message(), Not(HasSubstr("bad_alloc")));
}

TEST(GrpcStatusTest, PlainError_KeepsCodeAndMessageWithoutDetails) {
  const grpc::Status on_wire = ToGrpcStatus(absl::NotFoundError("org 42 not found"));
  EXPECT_EQ(on_wire.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(on_wire.error_message(), "org 42 not found");
  EXPECT_TRUE(on_wire.error_details().empty());
  const absl::Status back = FromGrpcStatus(on_wire);
  EXPECT_EQ(back, absl::NotFoundError("org 42 not found"));
}

// Answers every GetOrg with the status it was given, through ToGrpcStatus.
class FixedStatusRegistry final : public registry::v1::OrgRegistry::CallbackService {
 public:
  explicit FixedStatusRegistry(absl::Status status) : status_(std::move(status)) {}

  grpc::ServerUnaryReactor* GetOrg(grpc::CallbackServerContext* context,
                                   const registry::v1::GetOrgRequest* /*request*/,
                                   registry::v1::Org* /*response*/) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(status_));
    return reactor;
  }

 private:
  const absl::Status status_;
};

absl::Status CallGetOrg(const absl::Status& server_status) {
  FixedStatusRegistry service(server_status);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::UnavailableError("test server did not start");

  auto stub = registry::v1::OrgRegistry::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  registry::v1::GetOrgRequest request;
  registry::v1::Org org;
  const grpc::Status status = stub->GetOrg(&context, request, &org);
  server->Shutdown();
  return FromGrpcStatus(status);
}

TEST(GrpcStatusTest, OverTheWire_FieldViolationsReachTheClient) {
  const absl::Status back = CallGetOrg(InvalidFieldError("id", "must be positive"));
  EXPECT_EQ(back.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(GetFieldViolations(back), ElementsAre(FieldViolation{"id", "must be positive"}));
}

TEST(GrpcStatusTest, OverTheWire_RuleReachesTheClient) {
  const absl::Status back =
      CallGetOrg(RuleViolationError("dissolve-children", "the org has 2 active children"));
  EXPECT_EQ(back.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(GetViolatedRule(back), Optional(std::string("dissolve-children")));
}

}  // namespace
}  // namespace dangjian
