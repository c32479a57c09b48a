#!/usr/bin/env bash
# The differential oracle for edge-auth's CRS engine: ModSecurity 3 itself (Debian's libmodsecurity3,
# driven by scripts/crs-oracle/modsec_driver.c) and our engine run the same CRS 4 rules over the same
# corpus; every request whose verdict, logged rules or anomaly score differ is printed.
# Usage: bash scripts/crs-oracle.sh   (EDGE_CRS_DIR: the CRS copy, default ../shared/crs)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/include/modsecurity/modsecurity.h ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmodsecurity-dev >/dev/null
fi
out="${CARGO_TARGET_DIR:-target}/crs-oracle"
mkdir -p "$out"
cc -O2 -Wall -Werror -o "$out/modsec_driver" scripts/crs-oracle/modsec_driver.c -lmodsecurity
corpora=$(bash scripts/waf-corpora.sh)
crs="${EDGE_CRS_DIR:-../shared/crs}"
# Both paranoia levels are held to 99.5% of requests with the same verdict, logged rules and score, once
# the differences ModSecurity's own defects explain are set apart (see the example's docs).
for level in 1 2; do
  cargo run --release -q -p edge-auth --features crs --example crs_oracle -- \
    --driver "$out/modsec_driver" --crs "$crs" --conf-dir scripts/crs-oracle \
    --blns "$corpora/blns/package/blns.txt" --sqlmap "$corpora/sqlmap-1.10.10/sqlmap/data" \
    --paranoia "$level" --min-agreement 0.995 --show 12
done
