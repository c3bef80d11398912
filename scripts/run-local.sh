#!/usr/bin/env bash
# Runs the whole system on this machine without Docker: one receiver and $WORKERS workers
# (default 2) against the local PostgreSQL and RabbitMQ. Ctrl-C stops everything gracefully.
#
# Usage: scripts/run-local.sh [--debug]
#   --debug   run debug builds (quicker to build after a change; what scripts/check-api-docs.sh
#             uses, since CI has them already) instead of release builds
# Every variable of the README's configuration table is passed through (DATABASE_URL, AMQP_URL,
# AMQP_PREFIX, RECEIVER_ADDR, ADMIN_ADDR, WORKER_ADDR, …); WORKERS sets the number of workers.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
    "") ;;
    --debug) profile=debug ;;
    *)
        echo "usage: scripts/run-local.sh [--debug]" >&2
        exit 2
        ;;
esac

WORKERS="${WORKERS:-2}"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token}"
export RECEIVER_ADDR="${RECEIVER_ADDR:-0.0.0.0:8080}"
export ADMIN_ADDR="${ADMIN_ADDR:-127.0.0.1:8081}"

scripts/ensure-services.sh
if [[ $profile == release ]]; then
    cargo build --release --locked --bin receiver --bin worker
else
    cargo build --locked --bin receiver --bin worker
fi
# Wherever cargo puts its output (CARGO_TARGET_DIR, a workspace setting): ask it.
target_dir=$(cargo metadata --format-version 1 --no-deps \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$profile"
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
