#!/usr/bin/env bash
# Installs what tests/KVLink.AspNetCore.Tests/NpmClientTests.cs needs: Node.js and npm (Debian's nodejs and npm
# packages, only when no node is on PATH; each apt step bounded to 5 minutes, like .ci/redis-server.sh) and the npm
# openai package, exactly as tests/js/package-lock.json pins it. Called by .ci/run; safe to run again by hand.
# (Debian 12's nodejs is 18.x; the openai package names Node 20+ as supported and runs on 18's built-in fetch.)
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "tests/js: no node and no apt-get; install Node.js 18+ and npm" >&2; exit 1; }
  as_root=(); [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 "${as_root[@]}" apt-get update >/dev/null
  timeout 300 "${as_root[@]}" apt-get install -y --no-install-recommends nodejs npm >/dev/null
fi
timeout 300 npm ci --no-audit --no-fund --loglevel=error
echo "tests/js: node $(node --version), openai $(node -p 'require("./node_modules/openai/package.json").version')"
