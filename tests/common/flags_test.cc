// Tests for common/flags.h: environment twins, command line over environment, which flags count
// as ours, and redaction of secrets in the logged configuration.
#include "common/flags.h"

#include <stdlib.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, dj_test_port, 5432, "test flag");
ABSL_FLAG(std::string, dj_test_host, "localhost", "test flag");
ABSL_FLAG(int, dj_test_token_ttl, 60, "test flag whose name marks it secret");

namespace dangjian::flags {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Sets environment variables for one test and removes them afterwards; FlagSaver puts the
// flags back.
class FlagsTest : public ::testing::Test {
 protected:
  void SetEnv(const std::string& name, const std::string& value) {
    ASSERT_EQ(setenv(name.c_str(), value.c_str(), 1), 0);
    set_.push_back(name);
  }
  void TearDown() override {
    for (const std::string& name : set_) unsetenv(name.c_str());
  }

 private:
  absl::FlagSaver saver_;
  std::vector<std::string> set_;
};

TEST_F(FlagsTest, ApplyEnvironment_SetsFlagsFromTheirTwins) {
  SetEnv("DANGJIAN_DJ_TEST_PORT", "6543");
  SetEnv("DANGJIAN_DJ_TEST_HOST", "127.0.0.1");
  ASSERT_TRUE(internal::ApplyEnvironment().ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_port), 6543);
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_host), "127.0.0.1");
}

TEST_F(FlagsTest, ApplyEnvironment_LeavesFlagsWithoutTwinAlone) {
  SetEnv("DJ_TEST_PORT", "1");                // no prefix
  SetEnv("DANGJIAN_dj_test_port", "2");       // not upper case
  SetEnv("DANGJIAN_NO_SUCH_FLAG_HERE", "3");  // no such flag: ignored
  ASSERT_TRUE(internal::ApplyEnvironment().ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_port), 5432);
}

TEST_F(FlagsTest, ApplyEnvironment_RejectsBadValueNamingTheVariable) {
  SetEnv("DANGJIAN_DJ_TEST_PORT", "not-a-number");
  SetEnv("DANGJIAN_DJ_TEST_HOST", "db.internal");
  absl::Status status = internal::ApplyEnvironment();
  ASSERT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("DANGJIAN_DJ_TEST_PORT"));
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_port), 5432);
  // The good one was still applied.
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_host), "db.internal");
}

TEST_F(FlagsTest, ApplyEnvironment_NeverEchoesASecretFlagsValue) {
  SetEnv("DANGJIAN_DJ_TEST_TOKEN_TTL", "hunter2");
  absl::Status status = internal::ApplyEnvironment();
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("DANGJIAN_DJ_TEST_TOKEN_TTL"));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("hunter2")));
}

TEST_F(FlagsTest, ParseWithEnv_CommandLineWinsOverEnvironment) {
  SetEnv("DANGJIAN_DJ_TEST_PORT", "6543");
  SetEnv("DANGJIAN_DJ_TEST_HOST", "from-env");
  std::string prog = "prog", flag = "--dj_test_port=7654", positional = "extra";
  std::vector<char*> argv = {prog.data(), flag.data(), positional.data()};
  std::vector<char*> rest = ParseWithEnv(static_cast<int>(argv.size()), argv.data());
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_port), 7654);
  EXPECT_EQ(absl::GetFlag(FLAGS_dj_test_host), "from-env");
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_STREQ(rest[1], "extra");
}

TEST_F(FlagsTest, ParseWithEnv_ExitsOnBadEnvironmentValue) {
  SetEnv("DANGJIAN_DJ_TEST_PORT", "not-a-number");
  std::string prog = "prog";
  std::vector<char*> argv = {prog.data()};
  EXPECT_EXIT(ParseWithEnv(1, argv.data()), ::testing::ExitedWithCode(1), "DANGJIAN_DJ_TEST_PORT");
}

// The source root, from where this file sits in it.
std::string SourceRoot() {
  const std::string self = __FILE__;
  const std::string tail = "tests/common/flags_test.cc";
  return self.substr(0, self.size() - tail.size());
}

TEST(IsOwnSourceTest, OurFoldersOnly) {
  const std::string root = SourceRoot();
  EXPECT_TRUE(internal::IsOwnSource(root + "services/registry/main.cc"));
  EXPECT_TRUE(internal::IsOwnSource(root + "common/server.cc"));
  EXPECT_TRUE(internal::IsOwnSource(root + "tools/dj_token.cc"));
  EXPECT_TRUE(internal::IsOwnSource(root + "bench/registry_bench.cc"));
  EXPECT_FALSE(internal::IsOwnSource(root + "tests/common/flags_test.cc"));
  EXPECT_FALSE(internal::IsOwnSource(root + "third_party/x/services/y.cc"));
  EXPECT_FALSE(internal::IsOwnSource("/build/abseil-cpp/absl/flags/parse.cc"));
  EXPECT_FALSE(internal::IsOwnSource("/elsewhere/common/x.cc"));
  EXPECT_FALSE(internal::IsOwnSource(""));
  // absl reports files without the leading '/'.
  if (!root.empty() && root[0] == '/') {
    EXPECT_TRUE(internal::IsOwnSource(root.substr(1) + "services/registry/main.cc"));
    EXPECT_FALSE(internal::IsOwnSource(root.substr(1) + "tests/common/flags_test.cc"));
  }
}

TEST(IsOwnSourceTest, FilenameIsTheDefiningSourceFile) {
  // What IsOwnSource is given in practice: __FILE__ of the definition.
  absl::CommandLineFlag* ours = absl::FindCommandLineFlag("dj_test_port");
  ASSERT_NE(ours, nullptr);
  EXPECT_THAT(ours->Filename(), HasSubstr("tests/common/flags_test.cc"));
  absl::CommandLineFlag* abseils = absl::FindCommandLineFlag("flagfile");
  ASSERT_NE(abseils, nullptr);
  EXPECT_FALSE(internal::IsOwnSource(abseils->Filename())) << abseils->Filename();
}

TEST(EffectiveFlagsTest, ExcludesLibraryAndTestFlags) {
  std::map<std::string, std::string> flags = internal::EffectiveFlags();
  EXPECT_EQ(flags.count("flagfile"), 0u);
  EXPECT_EQ(flags.count("dj_test_port"), 0u);
}

TEST(RedactedValueTest, SecretNamesAreRedactedWhole) {
  for (const char* name : {"pii_key", "db_password", "admin_token", "client_secret", "API_KEY"}) {
    EXPECT_EQ(internal::RedactedValue(name, "s3cret"), "<redacted>") << name;
  }
}

TEST(RedactedValueTest, FlagsNamingFilesShowThePath) {
  EXPECT_EQ(internal::RedactedValue("jwt_keys_file", "/etc/dj/keys"), "/etc/dj/keys");
  EXPECT_EQ(internal::RedactedValue("tls_key_file", "/etc/dj/tls.key"), "/etc/dj/tls.key");
}

TEST(RedactedValueTest, PasswordsInsideConnectionStringsAreMasked) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"host=127.0.0.1 port=5432 password=hunter2 dbname=registry",
       "host=127.0.0.1 port=5432 password=<redacted> dbname=registry"},
      {"PASSWORD = hunter2 user=dj", "PASSWORD = <redacted> user=dj"},
      {"user=dj password='hunt er\\'2' dbname=x", "user=dj password=<redacted> dbname=x"},
      {"password=hunter2", "password=<redacted>"},
      {"postgresql://dj:hunter2@127.0.0.1:5432/registry?sslmode=disable",
       "postgresql://dj:<redacted>@127.0.0.1:5432/registry?sslmode=disable"},
      {"postgresql://dj@127.0.0.1/registry?password=hunter2&sslmode=disable",
       "postgresql://dj@127.0.0.1/registry?password=<redacted>&sslmode=disable"},
      {"redis://:hunter2@127.0.0.1:6379/0", "redis://:<redacted>@127.0.0.1:6379/0"},
      {"postgresql://dj:p@ss@db/x", "postgresql://dj:<redacted>@db/x"},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_EQ(internal::RedactedValue("registry_db", in), want) << in;
  }
}

TEST(RedactedValueTest, OrdinaryValuesAreUnchanged) {
  for (const char* value : {"127.0.0.1:50051", "postgresql://dj@127.0.0.1/registry", "8h", "",
                            "password_file_is_elsewhere", "http://127.0.0.1:9090/metrics"}) {
    EXPECT_EQ(internal::RedactedValue("listen", value), value);
  }
}

TEST(LogEffectiveFlagsTest, WritesOneJsonLine) {
  ::testing::internal::CaptureStderr();
  LogEffectiveFlags();
  const std::string out = ::testing::internal::GetCapturedStderr();
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  nlohmann::json line = nlohmann::json::parse(out);
  EXPECT_EQ(line["msg"], "effective configuration");
  EXPECT_TRUE(line["flags"].is_object()) << out;
  EXPECT_FALSE(line["flags"].contains("dj_test_port"));
}

}  // namespace
}  // namespace dangjian::flags
