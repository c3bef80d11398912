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

# RabbitMQ nodes and Postgres servers of tests that were killed before they could clean up
# (each test's own, under the temporary directory; an hour old at least, so a concurrent run's
# live ones are left alone). Never the machine's own services.
tmp="${TMPDIR:-/tmp}"
for dir in $(find "$tmp" -maxdepth 1 -name 'blitz-rmq-*' -mmin +60 2>/dev/null); do
    for pidfile in "$dir"/node-*/pid; do
        [[ -f $pidfile ]] && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
    done
    rm -rf "$dir"
done
for dir in $(find "$tmp" -maxdepth 1 -name 'blitz-pg-*' -mmin +60 2>/dev/null); do
    if [[ -f $dir/postmaster.pid ]]; then
        kill -KILL "$(head -1 "$dir/postmaster.pid")" 2>/dev/null || true
    fi
    rm -rf "$dir"
done

cargo test --workspace --locked "$@"
