#!/usr/bin/env bash
# Installs headless Chromium from Debian's packages, for scripts/check-chat-page.sh. Not needed by the normal build or tests.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then echo "chromium already installed: $(chromium --version)"; exit 0; fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
chromium --version
