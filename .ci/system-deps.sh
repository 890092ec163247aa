#!/usr/bin/env bash
# System packages the tests need: a real redis-server for the strict idempotency store.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    echo "redis-server is missing: install it (e.g. sudo apt-get install redis-server)" >&2
    exit 1
  fi
fi
