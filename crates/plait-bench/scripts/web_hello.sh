#!/usr/bin/env bash
# Hello-world GET against the web strand's example server, as the Python peers
# (../shared/bench/peers/http_servers.py) measure theirs: wrk -t1 -c64 -d10s --latency,
# three times after a 2 s warm-up; server and wrk share the machine's cores.
#
#   cargo build --release -p plait-web --example web_server
#   crates/plait-bench/scripts/web_hello.sh            # prints each run's requests/s and p99
set -euo pipefail
cd "$(dirname "$0")/../../.."
port=18080
PORT=$port ./target/release/examples/web_server > /dev/null &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/" > /dev/null && break; sleep 0.05; done
wrk -t1 -c64 -d2s "http://127.0.0.1:$port/" > /dev/null
for run in 1 2 3; do
  out=$(wrk -t1 -c64 -d10s --latency "http://127.0.0.1:$port/")
  rps=$(printf '%s\n' "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')
  echo "plait-web run $run: $rps requests/s, p99 $p99"
done
