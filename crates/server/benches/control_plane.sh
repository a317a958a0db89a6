#!/usr/bin/env bash
# Control-plane load benchmark (docs/benchmarks.md, "Control plane"): starts a release
# `switchyard server` on a fresh database, then runs the load generator as a second process on
# loopback. Usage:
#   crates/server/benches/control_plane.sh sqlite [REQUESTS] [CONCURRENCY]
#   crates/server/benches/control_plane.sh postgres://USER:PASS@HOST/DB [REQUESTS] [CONCURRENCY]
# (the PostgreSQL role must be allowed to create databases; a fresh one is made per run).
set -euo pipefail
cd "$(dirname "$0")/../../.."
KIND=${1:-sqlite}
REQUESTS=${2:-20000}
CONCURRENCY=${3:-32}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p switchyard-cli --bin switchyard
cargo build --release -q -p switchyard-server --example loadgen
BIN=$TARGET/release/switchyard
LOADGEN=$TARGET/release/examples/loadgen
WORK=$(mktemp -d)
if [ "$KIND" = sqlite ]; then
  DB="sqlite://$WORK/switchyard.db"
else
  NAME="sy_bench_$$_$(date +%s)"
  psql "$KIND" -q -c "CREATE DATABASE $NAME"
  DB="${KIND%/*}/$NAME"
fi
TOKEN=$("$BIN" token create --db "$DB" --tenant research)
"$BIN" server --db "$DB" --listen 127.0.0.1:0 > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do grep -q listening "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$WORK/server.out")
# Warm-up, then the measured run.
"$LOADGEN" --url "$URL" --token "$TOKEN" --requests 500 --concurrency "$CONCURRENCY" > /dev/null
"$LOADGEN" --url "$URL" --token "$TOKEN" --requests "$REQUESTS" --concurrency "$CONCURRENCY"
