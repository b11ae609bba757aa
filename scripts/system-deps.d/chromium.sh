#!/usr/bin/env bash
# Chromium, headless: tests/test_checklist.py opens the `check --format html` report in it.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: chromium is missing; run 'apt-get install -y chromium' as root" >&2
  exit 1
fi
echo "system-deps: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
