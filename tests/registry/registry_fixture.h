// Test fixture for the registry over gRPC: one real PostgreSQL and one real Redis per test binary,
// a fresh database and cache key prefix per test, the registry composed in-process exactly as
// main.cc composes it, on a free loopback port, and helpers to mint tokens and call it.
#pragma once

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/grpc_status.h"
#include "common/testing/harness.h"
#include "dangjian/registry/v1/registry.grpc.pb.h"
#include "services/registry/registry_app.h"

namespace dangjian::registry {

namespace v1 = ::dangjian::registry::v1;

class RegistryFixture : public ::testing::Test {
 protected:
  static constexpr char kKeyId[] = "test-key";
  static constexpr char kSecret[] = "registry-test-secret-of-at-least-32-bytes!";

  static void SetUpTestSuite() {
    auto pg = testing::PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = pg->release();
    auto redis = testing::RedisServer::Start();
    ASSERT_TRUE(redis.ok()) << redis.status();
    redis_ = redis->release();
  }

  static void TearDownTestSuite() {
    delete pg_;
    pg_ = nullptr;
    delete redis_;
    redis_ = nullptr;
  }

  // The config of the registry under test; tests may adjust it before StartRegistry().
  RegistryConfig MakeConfig() {
    RegistryConfig config;
    config.server.service_name = "registry";
    config.server.address = "127.0.0.1:0";
    config.server.shutdown_grace = absl::Seconds(2);
    config.metrics_address = "";
    config.pg.conninfo = pg_->ConnInfo(database_);
    config.pg.size = 4;
    cache::RedisOptions redis;
    redis.port = redis_->port();
    redis.key_prefix = absl::StrCat("dj:", database_, ":");
    redis.breaker_open_interval = absl::Milliseconds(200);
    redis.command_timeout = absl::Milliseconds(200);
    redis.connect_timeout = absl::Milliseconds(200);
    config.redis = redis;
    config.auth.keys = {auth::JwtKey{kKeyId, auth::Algorithm::kHs256, kSecret}};
    config.auth.issuer = "dangjian";
    config.auth.audience = "dangjian";
    config.worker_threads = 4;
    config.feed_poll_interval = absl::Milliseconds(50);
    return config;
  }

  void SetUp() override {
    static std::atomic<int> counter{0};
    database_ = absl::StrCat("registry_t", ++counter);
    ASSERT_TRUE(pg_->CreateDatabase(database_).ok());
  }

  void StartRegistry(RegistryConfig config) {
    auto app = RegistryApp::Start(std::move(config));
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = *std::move(app);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", app_->grpc_port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::OrgRegistry::NewStub(channel_);
    admin_ = Token({"admin"}, std::nullopt);
  }
  void StartRegistry() { StartRegistry(MakeConfig()); }

  void TearDown() override {
    if (app_) app_->Shutdown();
    app_.reset();
    (void)pg_->DropDatabase(database_);
  }

  static std::string Token(std::vector<std::string> roles, std::optional<int64_t> scope,
                           absl::Duration ttl = absl::Hours(1), const std::string& secret = kSecret,
                           absl::Time issued_at = absl::Now()) {
    auth::MintOptions options;
    options.issuer = "dangjian";
    options.audience = "dangjian";
    options.subject = "tester";
    options.roles = std::move(roles);
    options.org_scope = scope;
    options.ttl = ttl;
    auto token = auth::MintHs256(auth::JwtKey{kKeyId, auth::Algorithm::kHs256, secret}, options,
                                 issued_at);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }

  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token,
                                                  absl::Duration deadline = absl::Seconds(10)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return ctx;
  }

  static v1::Org MakeOrg(int64_t parent, v1::OrgKind kind, const std::string& name,
                         const std::string& code = "") {
    v1::Org org;
    org.set_parent_id(parent);
    org.set_kind(kind);
    org.set_name(name);
    org.set_code(code);
    org.set_domain(v1::ORG_DOMAIN_COMMUNITY);
    org.set_region_code("320102");
    return org;
  }

  // Creates an org as the admin; fails the test on error.
  v1::Org Create(int64_t parent, v1::OrgKind kind, const std::string& name,
                 const std::string& code = "") {
    v1::CreateOrgRequest req;
    req.set_request_id(absl::StrCat("req-", ++request_counter_));
    *req.mutable_org() = MakeOrg(parent, kind, name, code);
    v1::Org out;
    grpc::Status st = stub_->CreateOrg(Ctx(admin_).get(), req, &out);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  grpc::Status Get(int64_t id, v1::Org* out, const std::string& token) {
    v1::GetOrgRequest req;
    req.set_id(id);
    return stub_->GetOrg(Ctx(token).get(), req, out);
  }

  static inline testing::PostgresServer* pg_ = nullptr;
  static inline testing::RedisServer* redis_ = nullptr;
  std::string database_;
  std::unique_ptr<RegistryApp> app_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::OrgRegistry::Stub> stub_;
  std::string admin_;
  int request_counter_ = 0;
};

}  // namespace dangjian::registry
