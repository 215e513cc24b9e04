#!/usr/bin/env bash
# Side by side with Prometheus blackbox_exporter (issue 6, point 3; BENCHMARKS.md).
# Installs the Debian package prometheus-blackbox-exporter if its binary is
# missing, then runs the pipeline benchmark with --compare: blackbox_exporter
# at its best rate against the target farm, then healthmon, and the ratio of
# their checks per CPU-second. Options go to the benchmark, e.g.
#   bash bench/compare.sh --services 5000 --interval 1 --duration 30
# With --kind https both run against the same TLS farm (a CA made for the
# run; healthmon trusts it through checks.ca_file, the exporter's module
# through tls_config.ca_file), a full handshake per check on either side:
#   bash bench/compare.sh --kind https --services 2000 --interval 1 --duration 30
set -euo pipefail

cd "$(dirname "$0")/.."

pkg=prometheus-blackbox-exporter
if [[ -z "${BLACKBOX_EXPORTER:-}" ]] && ! command -v "$pkg" >/dev/null 2>&1; then
    echo "compare.sh: $pkg not found; installing the Debian package $pkg" >&2
    sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! "${sudo[@]}" apt-get install -y --no-install-recommends "$pkg"; then
        "${sudo[@]}" apt-get update
        "${sudo[@]}" apt-get install -y --no-install-recommends "$pkg"
    fi
fi

exec cargo bench --bench pipeline -- --compare "$@"
