#!/usr/bin/env bash
# Makes Debian's redis-server (7.0.x) available to the cluster tests (tests/KVLink.Core.Tests/Cluster) and prints
# one line saying what happened. Called by .ci/run; safe to run by hand. Bounded: apt steps time out after 5 min each.
# If the install fails, the tests that need redis-server are NOT skipped: .ci/run sets KVLINK_REQUIRE_REDIS_SERVER=1,
# so they run, fail with "redis-server not found", and the run reports them as failed (docs/scale-out.md).
set -uo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis-server: $(command -v redis-server) ($(redis-server --version | head -n 1))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "redis-server: absent, and not root (no sudo) to install it; the redis-server cluster tests will fail" >&2
  exit 1
fi
# A command prefix, not a shell function: `timeout` runs programs, and cannot run a function.
as_root=(); [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
if ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server: absent and no apt-get here; install redis-server (7.x) or set KVLINK_REDIS_SERVER" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
if timeout 300 "${as_root[@]}" apt-get update >"$log" 2>&1 \
   && timeout 300 "${as_root[@]}" apt-get install -y --no-install-recommends redis-server >>"$log" 2>&1; then
  # The package starts a system service on 6379 where an init system runs; the tests start their own servers.
  ("${as_root[@]}" service redis-server stop || "${as_root[@]}" systemctl stop redis-server) >/dev/null 2>&1 || true
  echo "redis-server: installed $(command -v redis-server) ($(redis-server --version | head -n 1))"
  rm -f "$log"
  exit 0
fi
echo "redis-server: install failed; last lines of the apt log:" >&2
tail -n 15 "$log" >&2
rm -f "$log"
exit 1
