#!/usr/bin/env bash
# System packages the tests need: a real redis-server for the strict idempotency store, and
# Debian's chromium with its matching chromium-driver (plus a CJK font, so the screenshot shows
# the Chinese labels) for the gallery's browser test.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ -n "$(fc-list :lang=zh 2>/dev/null || true)" ] || missing+=(fonts-wqy-zenhei)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing system packages: install them (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
