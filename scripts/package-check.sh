#!/usr/bin/env bash
# Runs `cargo publish --dry-run` for every library crate (cargo works out the dependency order and checks
# the metadata crates.io requires), unpacks the .crate files, and builds and tests scripts/packaged/ — a crate outside the workspace
# that depends on them by version, patched to the unpacked contents. What would be published is what is
# tested: a file left out of a package, or a path that only exists in the repository, fails here.
#
#   bash scripts/package-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
crates=(edge-core edge-kv edge-cache edge-auth edge-render edge-do edge-observe)
target=${CARGO_TARGET_DIR:-$root/target}

args=()
for crate in "${crates[@]}"; do args+=(-p "$crate"); done
# --no-verify: the build below is the verification, against the unpacked files and shared target dir.
# --allow-dirty: CI checks out a clean tree; locally, what is on disk is what gets checked.
cargo publish --dry-run --no-verify --allow-dirty "${args[@]}"
# publish keeps its .crate files in a scratch registry; `cargo package` leaves them in target/package.
cargo package --no-verify --allow-dirty "${args[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/crates"
for crate in "${crates[@]}"; do
  tar -xzf "$target/package/$crate-0.1.0.crate" -C "$work/crates"
done
cp -r scripts/packaged "$work/consumer"
mv "$work/consumer/Cargo.toml.in" "$work/consumer/Cargo.toml"
{
  echo
  echo "[patch.crates-io]"
  for crate in "${crates[@]}"; do echo "$crate = { path = \"$work/crates/$crate-0.1.0\" }"; done
} >>"$work/consumer/Cargo.toml"
# The workspace's lock file, so the consumer builds the dependency versions CI has just tested.
cp Cargo.lock "$work/consumer/Cargo.lock"
(cd "$work/consumer" && cargo test --target-dir "$target" -q 2>&1)
echo "packaged crates: ${crates[*]} built and tested from their .crate files"
