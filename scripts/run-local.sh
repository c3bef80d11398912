#!/usr/bin/env bash
# Runs the whole system on this machine without Docker: one receiver and $WORKERS workers
# (default 2) against the local PostgreSQL and RabbitMQ. Ctrl-C stops everything gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKERS="${WORKERS:-2}"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"
export RECEIVER_ADDR="${RECEIVER_ADDR:-0.0.0.0:8080}"
export ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:8081}"

scripts/ensure-services.sh
cargo build --release --locked
# Wherever cargo puts its output (CARGO_TARGET_DIR, a workspace setting): ask it.
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/release"
"$bin/receiver" migrate

# Workers' health listeners: WORKER_ADDR if you set one (worker i gets its port + i - 1),
# else 127.0.0.1:9090, 9091, …
worker_addr="${WORKER_ADDR:-127.0.0.1:9090}"
worker_host="${worker_addr%:*}"
worker_port="${worker_addr##*:}"

pids=()
stop() {
    trap - INT TERM EXIT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/receiver" &
pids+=($!)
for i in $(seq 1 "$WORKERS"); do
    WORKER_ADDR="$worker_host:$((worker_port + i - 1))" "$bin/worker" &
    pids+=($!)
done

echo "receiver: http://localhost:${RECEIVER_ADDR##*:}  admin: http://${ADMIN_ADDR}  (ADMIN_TOKEN=${ADMIN_TOKEN})"
echo "workers: ${WORKERS} (health on $worker_host:$worker_port…)  — Ctrl-C to stop"
wait -n "${pids[@]}"
