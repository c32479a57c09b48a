#!/usr/bin/env bash
# The gateway against bare axum over loopback (issue 22): the release gateway, on its embedded demo origin,
# serving a cache HIT of /about, and a bare axum server (examples/gateway/src/bin/bare-axum.rs) serving the
# same bytes, measured alternately with wrk (64 keep-alive connections, one wrk thread). Reports each
# round's requests per second, p99 latency and the server's CPU per request (user + system time from
# /proc, divided by the requests served), then the ratios. A measurement, not a test: nothing here passes
# or fails on a time.
#
#   bash scripts/load-test.sh [rounds=3] [seconds=10]
#
# Environment: CARGO_TARGET_DIR (default target), CONNECTIONS (64), GATEWAY_ARGS (extra gateway flags).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
seconds=${2:-10}
connections=${CONNECTIONS:-64}
target_dir=${CARGO_TARGET_DIR:-target}
gateway_port=18787
bare_port=18788
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

if ! command -v wrk > /dev/null; then
    echo "installing wrk (Debian package)" >&2
    (apt-get update -qq && apt-get install -y -qq wrk) > /dev/null || {
        echo "load-test: wrk is missing and could not be installed" >&2
        exit 1
    }
fi

cargo build --release -j2 -q -p edge-example-gateway --bins
bin="$target_dir/release"

wait_for() {
    for _ in $(seq 100); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "load-test: $1 did not answer" >&2
    exit 1
}

# Quotas far above what one client on loopback can send: the limiter runs on every request, never refuses.
"$bin/gateway" --port "$gateway_port" --rate-pages 1000000000/s --rate-api 1000000000/s \
    ${GATEWAY_ARGS:-} > "$work/gateway.log" 2>&1 &
pids+=($!)
gateway_pid=$!
wait_for "http://127.0.0.1:$gateway_port/about"
curl -fs "http://127.0.0.1:$gateway_port/about" -o "$work/page.html"
cache_status=$(curl -fs -D - -o /dev/null "http://127.0.0.1:$gateway_port/about" | tr -d '\r' |
    awk -F': ' 'tolower($1) == "cache-status" { print $2 }')
case "$cache_status" in
    *hit*) ;;
    *) echo "load-test: /about is not a cache HIT (Cache-Status: $cache_status)" >&2; exit 1 ;;
esac

"$bin/bare-axum" --port "$bare_port" --page "$work/page.html" > "$work/bare.log" 2>&1 &
pids+=($!)
bare_pid=$!
wait_for "http://127.0.0.1:$bare_port/about"

ticks_per_second=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One wrk run against $1 (url) while watching process $2; prints "req_per_s p99_us cpu_us_per_request".
measure() {
    local before after output
    before=$(cpu_ticks "$2")
    output=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency "$1")
    after=$(cpu_ticks "$2")
    if grep -q "Non-2xx" <<< "$output"; then
        echo "load-test: $1 answered errors:" >&2
        echo "$output" >&2
        exit 1
    fi
    awk -v cpu=$((after - before)) -v hz="$ticks_per_second" '
        function us(v) {
            if (v ~ /us$/) return v + 0
            if (v ~ /ms$/) return v * 1000
            return v * 1000000
        }
        /requests in/ { requests = $1 }
        /Requests\/sec/ { rps = $2 }
        $1 == "99%" { p99 = us($2) }
        END { printf "%.0f %.0f %.2f\n", rps, p99, cpu / hz * 1e6 / requests }
    ' <<< "$output"
}

printf '%-6s %-8s %12s %10s %14s\n' round server "req/s" "p99 µs" "CPU µs/req"
for round in $(seq "$rounds"); do
    read -r bare_rps bare_p99 bare_cpu < <(measure "http://127.0.0.1:$bare_port/about" "$bare_pid")
    printf '%-6s %-8s %12s %10s %14s\n' "$round" bare "$bare_rps" "$bare_p99" "$bare_cpu"
    read -r gw_rps gw_p99 gw_cpu < <(measure "http://127.0.0.1:$gateway_port/about" "$gateway_pid")
    printf '%-6s %-8s %12s %10s %14s\n' "$round" gateway "$gw_rps" "$gw_p99" "$gw_cpu"
    echo "$bare_rps $bare_p99 $bare_cpu $gw_rps $gw_p99 $gw_cpu" >> "$work/rounds"
done

awk '
    { br += $1; bp += $2; bc += $3; gr += $4; gp += $5; gc += $6; n++ }
    END {
        printf "\nover %d rounds: gateway/bare req/s %.2fx, p99 %.2fx, CPU added per request %.1f µs (%.1f vs %.1f)\n",
            n, gr / br, gp / bp, (gc - bc) / n, gc / n, bc / n
    }
' "$work/rounds"
curl -fs -D - -o /dev/null "http://127.0.0.1:$gateway_port/about" | tr -d '\r' | grep -i '^cache-status' || true
