# Generates C++ and gRPC code for every .proto under proto/ into one library, dj_proto.
# protoc is called directly: CMake's protobuf_generate mangles include paths (see TOOLCHAIN.md).
file(GLOB_RECURSE DJ_PROTO_FILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/proto/*.proto)
set(DJ_PROTO_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${DJ_PROTO_GEN_DIR})

set(DJ_PROTO_SRCS)
set(DJ_PROTO_HDRS)
foreach(proto ${DJ_PROTO_FILES})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${proto})
  string(REGEX REPLACE "\\.proto$" "" base ${rel})
  set(outs
    ${DJ_PROTO_GEN_DIR}/${base}.pb.cc ${DJ_PROTO_GEN_DIR}/${base}.pb.h
    ${DJ_PROTO_GEN_DIR}/${base}.grpc.pb.cc ${DJ_PROTO_GEN_DIR}/${base}.grpc.pb.h)
  add_custom_command(
    OUTPUT ${outs}
    COMMAND protobuf::protoc
      -I ${CMAKE_SOURCE_DIR}/proto
      --cpp_out=${DJ_PROTO_GEN_DIR}
      --grpc_out=${DJ_PROTO_GEN_DIR}
      --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
      ${rel}
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/proto
    DEPENDS ${proto} protobuf::protoc gRPC::grpc_cpp_plugin
    COMMENT "protoc ${rel}"
    VERBATIM)
  list(APPEND DJ_PROTO_SRCS ${DJ_PROTO_GEN_DIR}/${base}.pb.cc ${DJ_PROTO_GEN_DIR}/${base}.grpc.pb.cc)
  list(APPEND DJ_PROTO_HDRS ${DJ_PROTO_GEN_DIR}/${base}.pb.h ${DJ_PROTO_GEN_DIR}/${base}.grpc.pb.h)
endforeach()

# The standard health protocol, only so that server reflection can describe gRPC's built-in
# health service (see common/proto/grpc/health/v1/health.proto): messages and descriptor, no
# service code. Not public API, so not under proto/.
set(DJ_HEALTH_PROTO grpc/health/v1/health)
add_custom_command(
  OUTPUT ${DJ_PROTO_GEN_DIR}/${DJ_HEALTH_PROTO}.pb.cc ${DJ_PROTO_GEN_DIR}/${DJ_HEALTH_PROTO}.pb.h
  COMMAND protobuf::protoc
    -I ${CMAKE_SOURCE_DIR}/common/proto
    --cpp_out=${DJ_PROTO_GEN_DIR}
    ${DJ_HEALTH_PROTO}.proto
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/common/proto
  DEPENDS ${CMAKE_SOURCE_DIR}/common/proto/${DJ_HEALTH_PROTO}.proto protobuf::protoc
  COMMENT "protoc ${DJ_HEALTH_PROTO}.proto"
  VERBATIM)
list(APPEND DJ_PROTO_SRCS ${DJ_PROTO_GEN_DIR}/${DJ_HEALTH_PROTO}.pb.cc)
list(APPEND DJ_PROTO_HDRS ${DJ_PROTO_GEN_DIR}/${DJ_HEALTH_PROTO}.pb.h)

add_library(dj_proto STATIC ${DJ_PROTO_SRCS} ${DJ_PROTO_HDRS})
target_include_directories(dj_proto SYSTEM PUBLIC ${DJ_PROTO_GEN_DIR})
target_link_libraries(dj_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
