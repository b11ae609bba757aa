#!/usr/bin/env bash
# System packages the tests need (Debian): each scripts/system-deps.d/*.sh installs one thing when
# it is missing and says so. Run by `make test` before pytest; CI runs it as root on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"
for f in system-deps.d/*.sh; do
  [ -e "$f" ] || continue
  bash "$f"
done
