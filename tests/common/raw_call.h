// Test helpers for calls that the generated stubs cannot make: RawCall drives one call through
// the generic stub with hand-made bytes (services whose stubs Debian does not ship, such as
// grpc.health.v1 and grpc.reflection.v1alpha; messages that are not what a method expects), and
// a few helpers to encode and read protobuf's wire format by hand. Header-only; a RawCall is
// used from one thread.
#pragma once

#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace dangjian::testing {

// A call through the generic stub, driven synchronously on its own completion queue, with
// `metadata` (e.g. {"authorization", "Bearer ..."}) sent along.
class RawCall {
 public:
  RawCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
          absl::Duration timeout = absl::Seconds(10),
          const std::vector<std::pair<std::string, std::string>>& metadata = {})
      : stub_(channel) {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    for (const auto& [key, value] : metadata) context_.AddMetadata(key, value);
    call_ = stub_.PrepareCall(&context_, method, &cq_);
    call_->StartCall(this);
    Await();
  }
  ~RawCall() {
    if (!finished_) {
      context_.TryCancel();
      Finish();
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  bool Write(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call_->Write(buffer, this);
    return Await();
  }
  bool WritesDone() {
    call_->WritesDone(this);
    return Await();
  }
  std::optional<std::string> Read() {
    grpc::ByteBuffer buffer;
    call_->Read(&buffer, this);
    if (!Await()) return std::nullopt;
    std::vector<grpc::Slice> slices;
    if (!buffer.Dump(&slices).ok()) return std::nullopt;
    std::string out;
    for (const grpc::Slice& s : slices) {
      out.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return out;
  }
  grpc::Status Finish() {
    grpc::Status status;
    call_->Finish(&status, this);
    Await();
    finished_ = true;
    return status;
  }
  void Cancel() { context_.TryCancel(); }

 private:
  bool Await() {
    void* tag = nullptr;
    bool ok = false;
    if (!cq_.Next(&tag, &ok)) return false;
    return ok;
  }

  grpc::GenericStub stub_;
  grpc::CompletionQueue cq_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool finished_ = false;
};

// Protobuf wire encoding of a string field; enough for the two request messages we send.
inline std::string StringField(int number, const std::string& value) {
  std::string out;
  uint64_t key = (static_cast<uint64_t>(number) << 3) | 2;
  for (uint64_t v : {key, static_cast<uint64_t>(value.size())}) {
    while (v >= 0x80) {
      out.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out.push_back(static_cast<char>(v));
  }
  return out + value;
}

inline std::optional<uint64_t> VarintField(const std::string& message, int number) {
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(message)) return std::nullopt;
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto& field = fields.field(i);
    if (field.number() == number && field.type() == google::protobuf::UnknownField::TYPE_VARINT) {
      return field.varint();
    }
  }
  return 0;  // proto3 leaves zero values out
}

inline std::vector<std::string> BytesFields(const std::string& message, int number) {
  std::vector<std::string> out;
  google::protobuf::UnknownFieldSet fields;
  if (!fields.ParseFromString(message)) return out;
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto& field = fields.field(i);
    if (field.number() == number &&
        field.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      out.push_back(field.length_delimited());
    }
  }
  return out;
}

}  // namespace dangjian::testing
