#!/usr/bin/env bash
# Debian packages the tests need (a real redis-server; Chromium and its WebDriver for the browser tests);
# installed only when missing.
set -euo pipefail
needed=()
command -v redis-server >/dev/null || needed+=(redis-server)
command -v chromium >/dev/null || needed+=(chromium)
command -v chromedriver >/dev/null || needed+=(chromium-driver)
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[setup] missing Debian packages: ${needed[*]}; run: sudo apt-get install -y ${needed[*]}" >&2
  exit 1
fi
echo "[setup] installing Debian packages: ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "${needed[@]}" >/dev/null
