#!/bin/sh
# The Redis image's HEALTHCHECK: Redis answers PONG to a PING with the password. The password is
# read from the file Redis includes (requirepass line) and given to redis-cli in REDISCLI_AUTH,
# not on its command line; redis-cli exits 0 even when refused, hence the check of the reply.
set -eu
REDISCLI_AUTH=$(sed -n 's/^requirepass //p' /run/secrets/redis/auth.conf)
export REDISCLI_AUTH
[ "$(redis-cli --no-auth-warning -h 127.0.0.1 -p 6379 ping)" = PONG ]
