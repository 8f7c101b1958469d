#!/bin/sh
# The registry image's HEALTHCHECK: asks the registry in this container, over grpc.health.v1
# (dj-health), whether dangjian.registry.v1.OrgRegistry is SERVING. Exit 0 healthy, 1 not.
#
# Off loopback the registry speaks only TLS, so when DANGJIAN_TLS_CERT_FILE is set the probe
# uses TLS too: it trusts DJ_HEALTH_CA_FILE (default: ca.crt next to the certificate, as in a
# Kubernetes TLS Secret, else the certificate itself) and expects the certificate to name DJ_HEALTH_TLS_SERVER_NAME (default
# localhost; the probe dials 127.0.0.1).
set -eu
port=${DANGJIAN_GRPC_ADDRESS##*:}
service=dangjian.registry.v1.OrgRegistry
if [ -z "${DANGJIAN_TLS_CERT_FILE:-}" ]; then
  exec dj-health --target "127.0.0.1:$port" --service "$service" --timeout 4s
fi
ca=${DJ_HEALTH_CA_FILE:-$(dirname "$DANGJIAN_TLS_CERT_FILE")/ca.crt}
[ -r "$ca" ] || ca=$DANGJIAN_TLS_CERT_FILE
exec dj-health --target "127.0.0.1:$port" --service "$service" --timeout 4s \
  --tls_ca_file "$ca" --tls_server_name "${DJ_HEALTH_TLS_SERVER_NAME:-localhost}"
