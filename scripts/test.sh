#!/usr/bin/env bash
# The test command: real PostgreSQL and RabbitMQ on this machine, every test in its own database
# and queue namespace. Usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-services.sh

# Leftovers of interrupted earlier runs (tests clean up after themselves when they finish).
psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
    "SELECT datname FROM pg_database WHERE datname LIKE 'blitz\_t\_%'" 2>/dev/null |
    while read -r db; do
        psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
    done
rabbitmqctl -q list_queues name 2>/dev/null | grep -E '^t_[a-z0-9]{12}\.' |
    while read -r queue; do rabbitmqctl -q delete_queue "$queue" >/dev/null || true; done

cargo test --workspace --locked "$@"
