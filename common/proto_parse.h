// Parsing of protobuf messages that a handler reads itself (a method served raw, as
// grpc::ByteBuffer), with an error that says why a message was refused. gRPC's generated handlers
// only learn that a message did not parse; here the caller learns which field was wrong, e.g.
// "rows[2].name is not valid UTF-8" (a proto3 string must be UTF-8), or that the bytes are not
// protobuf's wire format at all. Pure functions; thread-safe.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace dangjian {

// Parses `buffer` into `message` (replacing its contents). INVALID_ARGUMENT with the reason of
// WhyUnparsable on failure.
absl::Status ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message& message);

// Why `bytes` do not parse as a message of `type`: the path of the first string field that is not
// valid UTF-8 (repeated fields indexed from 0), or a general reason.
std::string WhyUnparsable(absl::string_view bytes, const google::protobuf::Descriptor& type);

}  // namespace dangjian
