#!/usr/bin/env bash
# SLURM (slurmctld, slurmd, the client commands) and munge, for tests/test_slurm.py: a single-node
# cluster started by the test in a temporary folder. Debian packages slurm-wlm and munge.
set -euo pipefail
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then   # the other tests still run; tests/test_slurm.py fails and says why
  echo "system-deps: ${need[*]} missing and not root: sudo apt-get install ${need[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]} (Debian)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
