#!/usr/bin/env bash
# The test command: real PostgreSQL and RabbitMQ on this machine, every test in its own database
# and queue namespace. Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-services.sh

# Leftovers of interrupted earlier runs (tests clean up after themselves when they finish).
# Databases still in use by a concurrent run are skipped (no FORCE); queues only in CI, where
# nothing else runs.
stale_databases=$(psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'blitz\_t\_%'" 2>/dev/null || true)
for db in $stale_databases; do
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\"" 2>/dev/null || true
done
stale_queues=""
[[ "${CI:-}" == "true" ]] && stale_queues=$(rabbitmqctl -q list_queues name 2>/dev/null | grep -E '^t_[a-z0-9]{12}\.' || true)
for queue in $stale_queues; do
    rabbitmqctl -q delete_queue "$queue" >/dev/null || true
done

cargo test --workspace --locked "$@"
