#!/usr/bin/env bash
# Fetches the public corpora the WAF is measured on, from package registries only, into a cache outside
# the repository, and prints the directory holding them:
#   - big-list-of-naughty-strings 1.0.0 (npm, MIT): attacks and ordinary strings
#   - sqlmap 1.10.10 (PyPI, GPL-2.0; read as data, never shipped): SQL injection payload templates,
#     user agents and word lists
# Usage: dir=$(bash scripts/waf-corpora.sh)
set -euo pipefail

home="${EDGE_CORPORA_HOME:-$HOME/.cache/edge-corpora}"
mkdir -p "$home"
cd "$home"

if [ ! -f blns/package/blns.txt ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch big-list-of-naughty-strings" >&2; exit 1; }
  npm pack big-list-of-naughty-strings@1.0.0 --silent >/dev/null 2>&1
  mkdir -p blns
  tar xzf big-list-of-naughty-strings-1.0.0.tgz -C blns
fi

if [ ! -d sqlmap-1.10.10/sqlmap/data/xml/payloads ]; then
  python3 -m pip download sqlmap==1.10.10 --no-deps --no-binary :all: -q -d . >/dev/null
  tar xzf sqlmap-1.10.10.tar.gz sqlmap-1.10.10/sqlmap/data/xml sqlmap-1.10.10/sqlmap/data/txt
fi

echo "$home"
