#include "common/audit.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace dangjian::audit {
namespace {

// The chain's hashes are hex sha256; the first row's predecessor is all zeros.
const std::string& GenesisHash() {
  static const std::string* const kGenesis = new std::string(64, '0');
  return *kGenesis;
}

// Fields are capped so one oversized request cannot bloat the log; the cap is in bytes.
constexpr size_t kMaxFieldBytes = 1024;

constexpr char kUnwritten[] = "audit row not written";

// Rows are read in pages so no single statement outlives the pool's statement timeout.
constexpr int kVerifyPageRows = 1000;

constexpr char kHeadStatement[] = "dj_audit_head";
constexpr char kHeadSql[] =
    "SELECT last_id, last_hash, (EXTRACT(EPOCH FROM now()) * 1000000)::bigint "
    "FROM audit_chain_head WHERE singleton FOR UPDATE";

constexpr char kInsertStatement[] = "dj_audit_insert";
constexpr char kInsertSql[] =
    "INSERT INTO audit_log (id, at, caller, method, target, request_id, outcome, detail, "
    "prev_hash, hash) VALUES ($1, now(), $2, $3, $4, $5, $6, $7, $8, $9)";

constexpr char kAdvanceStatement[] = "dj_audit_advance";
constexpr char kAdvanceSql[] =
    "UPDATE audit_chain_head SET last_id = $1, last_hash = $2 WHERE singleton";

// `at` is hashed as integer microseconds since the epoch: exact in both directions
// (EXTRACT returns numeric since PostgreSQL 14), unlike any text rendering of a timestamptz.
constexpr char kPageSql[] =
    "SELECT id, (EXTRACT(EPOCH FROM at) * 1000000)::bigint, caller, method, target, request_id, "
    "outcome, detail, prev_hash, hash FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2";
constexpr char kReadHeadSql[] = "SELECT last_id, last_hash FROM audit_chain_head WHERE singleton";

constexpr char kSchemaV1[] = R"sql(
CREATE TABLE audit_log (
  id         bigint      PRIMARY KEY,  -- 1, 2, 3, ... without gaps, assigned from the head
  at         timestamptz NOT NULL,
  caller     text        NOT NULL,
  method     text        NOT NULL,
  target     text        NOT NULL,
  request_id text        NOT NULL,
  outcome    text        NOT NULL,
  detail     text        NOT NULL,
  prev_hash  text        NOT NULL,
  hash       text        NOT NULL
);
-- One row: the newest entry of the chain. Appends lock it, so the chain never forks.
CREATE TABLE audit_chain_head (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  last_id   bigint  NOT NULL,
  last_hash text    NOT NULL
);
INSERT INTO audit_chain_head (singleton, last_id, last_hash)
VALUES (true, 0, '0000000000000000000000000000000000000000000000000000000000000000');
CREATE INDEX audit_log_target_idx ON audit_log (target, id);
)sql";

// Keeps valid UTF-8 up to kMaxFieldBytes; NUL and invalid bytes become '?', since PostgreSQL
// text refuses both and an audit line must never make its change fail.
std::string Clean(absl::string_view in) {
  std::string out;
  out.reserve(std::min(in.size(), kMaxFieldBytes));
  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    size_t len = 0;
    if (c >= 0x01 && c < 0x80) {
      len = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
    }
    bool valid = len > 0 && i + len <= in.size();
    for (size_t k = 1; valid && k < len; ++k) {
      valid = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    }
    if (valid && len >= 3) {
      // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
      const unsigned char c1 = static_cast<unsigned char>(in[i + 1]);
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
          (c == 0xF4 && c1 > 0x8F)) {
        valid = false;
      }
    }
    if (!valid) len = 1;
    if (out.size() + len > kMaxFieldBytes) break;
    if (valid) {
      out.append(in.data() + i, len);
    } else {
      out.push_back('?');
    }
    i += len;
  }
  return out;
}

struct Entry {
  int64_t id = 0;
  int64_t at_micros = 0;
  AuditRecord record;
};

void AppendField(std::string& out, absl::string_view field) {
  // Length-prefixed (8 bytes, big-endian), so no choice of field contents can make two different
  // rows encode the same.
  uint64_t n = field.size();
  std::array<char, 8> prefix;
  for (int k = 7; k >= 0; --k) {
    prefix[k] = static_cast<char>(n & 0xFF);
    n >>= 8;
  }
  out.append(prefix.data(), prefix.size());
  out.append(field.data(), field.size());
}

absl::StatusOr<std::string> ChainHash(absl::string_view prev_hash, const Entry& e) {
  std::string message = "dangjian-audit-v1";
  AppendField(message, prev_hash);
  AppendField(message, absl::StrCat(e.id));
  AppendField(message, absl::StrCat(e.at_micros));
  AppendField(message, e.record.caller);
  AppendField(message, e.record.method);
  AppendField(message, e.record.target);
  AppendField(message, e.record.request_id);
  AppendField(message, e.record.outcome);
  AppendField(message, e.record.detail);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(message.data(), message.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return absl::InternalError("sha256 failed");
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace

const std::vector<sql::Migration>& Migrations() {
  static const auto* const kMigrations =
      new std::vector<sql::Migration>{{1, "create_audit_log", kSchemaV1}};
  return *kMigrations;
}

// libpqxx exceptions are left to propagate: the pool around `tx` maps them and retries the whole
// unit of work on a serialization failure, which a status returned from here would prevent.
absl::Status Append(pqxx::transaction_base& tx, const AuditRecord& record) {
  // Defining is idempotent per connection; libpqxx sends each definition to the server once.
  pqxx::connection_base& conn = tx.conn();
  conn.prepare(kHeadStatement, kHeadSql);
  conn.prepare(kInsertStatement, kInsertSql);
  conn.prepare(kAdvanceStatement, kAdvanceSql);

  const pqxx::result head = tx.exec_prepared(kHeadStatement);
  if (head.size() != 1) {
    return absl::FailedPreconditionError("audit chain head is missing; apply the audit migrations");
  }
  Entry entry;
  entry.id = head[0][0].as<int64_t>() + 1;
  const std::string prev_hash = head[0][1].as<std::string>();
  entry.at_micros = head[0][2].as<int64_t>();
  entry.record.caller = Clean(record.caller);
  entry.record.method = Clean(record.method);
  entry.record.target = Clean(record.target);
  entry.record.request_id = Clean(record.request_id);
  entry.record.outcome = Clean(record.outcome);
  entry.record.detail = Clean(record.detail);
  DJ_ASSIGN_OR_RETURN(const std::string hash, ChainHash(prev_hash, entry));

  const AuditRecord& r = entry.record;
  tx.exec_prepared0(kInsertStatement, entry.id, r.caller, r.method, r.target, r.request_id,
                    r.outcome, r.detail, prev_hash, hash);
  tx.exec_prepared0(kAdvanceStatement, entry.id, hash);
  return absl::OkStatus();
}

absl::Status AppendStandalone(sql::PgPool& pool, const AuditRecord& record) {
  sql::TxOptions options;
  options.name = "audit_append";
  absl::Status status =
      pool.Run(options, [&record](pqxx::transaction_base& tx) { return Append(tx, record); });
  // While the database is down every refused or failed call leaves its row unwritten: one line
  // per 10 s says how many, instead of one per row.
  if (!status.ok()) {
    pool.failure_log().Error(kUnwritten, {{"method", Clean(record.method)},
                                          {"request_id", Clean(record.request_id)},
                                          {"outcome", Clean(record.outcome)},
                                          {"error", std::string(status.message())}});
  } else if (const int64_t lost = pool.failure_log().EndRun(kUnwritten); lost > 0) {
    log::Warn("audit rows are written again", {{"unwritten", lost}});
  }
  return status;
}

absl::StatusOr<ChainReport> VerifyChain(sql::PgPool& pool) {
  sql::TxOptions options;
  options.name = "audit_verify";
  // One snapshot for all pages and the head, so concurrent appends cannot look like tampering.
  options.isolation = sql::Isolation::kRepeatableRead;
  options.read_only = true;
  ChainReport report;
  absl::Status status = pool.Run(options, [&report](pqxx::transaction_base& tx) -> absl::Status {
    report = ChainReport();
    std::string expected_prev = GenesisHash();
    int64_t expected_id = 1;
    int64_t last_id = 0;
    bool more = true;
    while (more) {
      const pqxx::result page = tx.exec_params(kPageSql, last_id, kVerifyPageRows);
      more = page.size() == static_cast<size_t>(kVerifyPageRows);
      for (const pqxx::row& row : page) {
        Entry e;
        e.id = row[0].as<int64_t>();
        e.at_micros = row[1].as<int64_t>();
        e.record.caller = row[2].as<std::string>();
        e.record.method = row[3].as<std::string>();
        e.record.target = row[4].as<std::string>();
        e.record.request_id = row[5].as<std::string>();
        e.record.outcome = row[6].as<std::string>();
        e.record.detail = row[7].as<std::string>();
        const std::string prev_hash = row[8].as<std::string>();
        const std::string hash = row[9].as<std::string>();
        ++report.rows;
        last_id = e.id;
        if (report.first_bad_id == 0) {
          // A removed row shows as a gap in the ids or a predecessor hash that does not match;
          // an edited one as a hash that does not match its fields.
          DJ_ASSIGN_OR_RETURN(const std::string recomputed, ChainHash(prev_hash, e));
          if (e.id != expected_id || prev_hash != expected_prev || recomputed != hash) {
            report.first_bad_id = e.id;
          }
        }
        expected_prev = hash;
        expected_id = e.id + 1;
      }
    }
    if (report.first_bad_id != 0) return absl::OkStatus();
    // Rows removed from the end leave no later row to notice: the head still names them.
    const pqxx::result head = tx.exec(kReadHeadSql);
    if (head.size() != 1) {
      return absl::FailedPreconditionError("audit chain head is missing");
    }
    const int64_t head_id = head[0][0].as<int64_t>();
    const std::string head_hash = head[0][1].as<std::string>();
    if (head_id > last_id) {
      report.first_bad_id = last_id + 1;
    } else if (head_id < last_id) {
      report.first_bad_id = head_id + 1;
    } else if (head_hash != expected_prev) {
      report.first_bad_id = std::max<int64_t>(last_id, 1);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return report;
}

}  // namespace dangjian::audit
