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
target/release/receiver migrate

pids=()
stop() {
    trap - INT TERM EXIT
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

target/release/receiver &
pids+=($!)
for i in $(seq 1 "$WORKERS"); do
    WORKER_ADDR="127.0.0.1:$((9089 + i))" target/release/worker &
    pids+=($!)
done

echo "receiver: http://localhost:${RECEIVER_ADDR##*:}  admin: http://${ADMIN_ADDR}  (ADMIN_TOKEN=${ADMIN_TOKEN})"
echo "workers: ${WORKERS} (health on 127.0.0.1:9090…)  — Ctrl-C to stop"
wait -n "${pids[@]}"
