#include "common/proto_parse.h"

#include <google/protobuf/unknown_field_set.h>

#include <map>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/text.h"

namespace dangjian {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// The path of the first string field under `fields` (a message of `type`) that is not UTF-8.
// Fields the type does not know are skipped: protobuf keeps them as unknown fields.
std::optional<std::string> FindBadString(const UnknownFieldSet& fields, const Descriptor& type,
                                         const std::string& prefix) {
  std::map<int, int> seen;  // occurrences so far of each field number: the repeated index
  for (int i = 0; i < fields.field_count(); ++i) {
    const UnknownField& field = fields.field(i);
    const int index = seen[field.number()]++;
    const FieldDescriptor* fd = type.FindFieldByNumber(field.number());
    if (fd == nullptr || field.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const std::string path =
        absl::StrCat(prefix, fd->name(), fd->is_repeated() ? absl::StrCat("[", index, "]") : "");
    if (fd->type() == FieldDescriptor::TYPE_STRING) {
      if (!IsValidUtf8(field.length_delimited())) return path;
    } else if (fd->type() == FieldDescriptor::TYPE_MESSAGE) {
      UnknownFieldSet inner;
      if (!inner.ParseFromString(field.length_delimited())) continue;
      std::optional<std::string> bad = FindBadString(inner, *fd->message_type(), path + ".");
      if (bad) return bad;
    }
  }
  return std::nullopt;
}

}  // namespace

std::string WhyUnparsable(absl::string_view bytes, const Descriptor& type) {
  UnknownFieldSet fields;
  if (!fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return "the bytes are not protobuf's wire format";
  }
  std::optional<std::string> bad = FindBadString(fields, type, "");
  if (bad) return absl::StrCat(*bad, " is not valid UTF-8, which every string field must be");
  return absl::StrCat("the bytes do not encode a ", type.name(),
                      " (a field has the wire type of another)");
}

absl::Status ParseMessage(const grpc::ByteBuffer& buffer, google::protobuf::Message& message) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok())
    return absl::InvalidArgumentError("the message could not be read");
  std::string bytes;
  for (const grpc::Slice& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (message.ParseFromString(bytes)) return absl::OkStatus();
  return absl::InvalidArgumentError(WhyUnparsable(bytes, *message.GetDescriptor()));
}

}  // namespace dangjian
