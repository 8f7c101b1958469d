// gRPC server and client interceptors recording the standard metrics under the names of
// go-grpc-prometheus (grpc_server_* and grpc_client_*), so existing dashboards and alerts work.
// Thread-safe.
#pragma once

#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

#include <memory>

namespace dangjian::metrics {

// Records grpc_server_started_total, grpc_server_handled_total{grpc_code},
// grpc_server_handling_seconds, grpc_server_msg_received_total and grpc_server_msg_sent_total,
// each labelled grpc_service, grpc_method, grpc_type. Calls to a method the binary has no service
// for are all counted under the label value "unknown" (service, method and type), so a caller
// sending made-up method names cannot add series.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewServerMetricsInterceptor(
    prometheus::Registry& registry);

// The client twins: grpc_client_started_total, grpc_client_handled_total,
// grpc_client_handling_seconds, grpc_client_msg_received_total, grpc_client_msg_sent_total.
std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface> NewClientMetricsInterceptor(
    prometheus::Registry& registry);

}  // namespace dangjian::metrics
