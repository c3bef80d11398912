#!/usr/bin/env bash
# Runs the examples of the README's "Try it" and of docs/api.md, in order, and fails when an
# answer differs from what the docs show (the convention is in docs/api.md, "How the examples
# are checked"; the runner is scripts/doc-examples.py).
#
# By default it starts the system the way a user does, with scripts/run-local.sh (debug builds,
# which CI has already; --release for release builds), but isolated and throwaway: free ports, a
# fresh database, its own RabbitMQ vhost and AMQP_PREFIX, all removed at the end, pass or fail.
# The examples' localhost:8080 / localhost:8081 / localhost:9090 are pointed at those ports.
#
# With --reuse it runs the examples verbatim against a system already running with the defaults
# of scripts/run-local.sh (receiver on :8080, admin on 127.0.0.1:8081, first worker's health on
# :9090, ADMIN_TOKEN=dev-admin-token). Each run creates new contests (their ids carry the time),
# so it can run any number of times; there is no API to delete a contest, so they stay in that
# system's database, as when a reader runs the examples by hand.
#
# Usage: scripts/check-api-docs.sh [--reuse | --release]
set -euo pipefail
cd "$(dirname "$0")/.."

mode=own
profile=--debug
case "${1:-}" in
    "") ;;
    --reuse) mode=reuse ;;
    --release) profile="" ;;
    *)
        echo "usage: scripts/check-api-docs.sh [--reuse | --release]" >&2
        exit 2
        ;;
esac

for tool in curl jq openssl python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "the docs' examples need $tool (Debian: apt-get install $tool)" >&2
        exit 1
    fi
done

work=target/check-api-docs
rm -rf "$work"
mkdir -p "$work"
started=$(date +%s)

docs=(README.md --strict docs/api.md)

if [[ $mode == reuse ]]; then
    for url in http://localhost:8081/readyz http://localhost:9090/readyz; do
        if ! curl -fsS --max-time 5 "$url" >/dev/null; then
            echo "--reuse: nothing ready at $url; start scripts/run-local.sh first" >&2
            exit 1
        fi
    done
    python3 scripts/doc-examples.py "${docs[@]}" --workdir "$work/run"
    echo "== the docs' examples hold ($(($(date +%s) - started)) s)"
    exit 0
fi

scripts/ensure-services.sh

suffix=$(python3 -c 'import secrets; print(secrets.token_hex(6))')
database="blitz_docs_$suffix"
vhost="docs_$suffix"
# Three free ports, and the one after the third (run-local.sh gives worker i the port + i - 1).
read -r public_port admin_port worker_port < <(python3 -c '
import socket
def free(port=0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s
held = [free(), free()]
while True:
    first = free()
    second = free(first.getsockname()[1] + 1)
    held.append(first)
    if second:
        held.append(second)
        break
print(held[0].getsockname()[1], held[1].getsockname()[1], first.getsockname()[1])
')
log="$work/run-local.log"

runner=""
cleanup() {
    local status=$?
    if [[ -n $runner ]]; then
        # scripts/run-local.sh and everything it started (its own process group: setsid) stop
        # gracefully on SIGTERM, even during the build.
        kill -TERM -- "-$runner" 2>/dev/null || true
        wait "$runner" 2>/dev/null || true
    fi
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    if ((status != 0)); then
        echo "== check-api-docs FAILED; the system's log is $log" >&2
        grep -hE "ERROR|panicked" "$log" 2>/dev/null | tail -20 >&2 || true
    fi
    exit "$status"
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

echo "== starting scripts/run-local.sh ${profile:---release} (public :$public_port, admin :$admin_port, workers' health :$worker_port…)"
# The variables a user would set to run a second system beside the first: its own database,
# vhost, prefix and ports. PUBLIC_BASE_URL keeps its default, so webhookUrls read as the docs show.
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database" \
    AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost" \
    AMQP_PREFIX="docs_$suffix" \
    ADMIN_TOKEN=dev-admin-token \
    RECEIVER_ADDR="127.0.0.1:$public_port" \
    ADMIN_ADDR="127.0.0.1:$admin_port" \
    WORKER_ADDR="127.0.0.1:$worker_port" \
    WORKERS=2 \
    RUST_LOG="warn,receiver=info,worker=info" \
    setsid scripts/run-local.sh $profile >"$log" 2>&1 &
runner=$!

# The build (a no-op when the binaries are up to date) comes first; then both workers must be
# consuming and the receiver ready.
ready() {
    curl -fsS --max-time 2 "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 &&
        curl -fsS --max-time 2 "http://127.0.0.1:$worker_port/readyz" >/dev/null 2>&1 &&
        curl -fsS --max-time 2 "http://127.0.0.1:$((worker_port + 1))/readyz" >/dev/null 2>&1
}
until ready; do
    if ! kill -0 "$runner" 2>/dev/null; then
        echo "scripts/run-local.sh exited:" >&2
        tail -20 "$log" >&2
        exit 1
    fi
    if (($(date +%s) - started > 900)); then
        echo "the system did not get ready within 15 minutes" >&2
        exit 1
    fi
    sleep 0.5
done
echo "== ready after $(($(date +%s) - started)) s; running the examples"
examples_started=$(date +%s)

python3 scripts/doc-examples.py "${docs[@]}" --workdir "$work/run" \
    --replace "localhost:8080=localhost:$public_port" \
    --replace "localhost:8081=localhost:$admin_port" \
    --replace "localhost:9090=localhost:$worker_port"
echo "== the docs' examples hold ($(($(date +%s) - examples_started)) s for the examples, $(($(date +%s) - started)) s in all)"
