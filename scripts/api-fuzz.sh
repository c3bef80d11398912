#!/usr/bin/env bash
# API fuzzing: schemathesis (from PyPI) against a running receiver and worker, checked against the
# checked-in openapi.json. Fails on any 5xx other than a documented 503, on a status code, content
# type or header the spec does not document, on any body that does not match its schema, and on a
# method a path does not take answered other than 405 with `Allow`. Before it, a few raw-socket
# probes check the answers schemathesis does not provoke (413 from a declared length, 415, 405,
# undecodable paths, unknown routes): each must be the JSON envelope.
#
# Everything is throwaway: a fresh database, its own RabbitMQ vhost and AMQP_PREFIX, free ports;
# all of it is removed at the end, pass or fail. Bounded: about a minute on 2 cores after the build.
#
# Usage: scripts/api-fuzz.sh
#   FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 100)
#   FUZZ_SEED          reproduce an earlier run (its seed is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The CLI differs between schemathesis 3.x and 4.x: the flags below are 4.x's. Pinned, so a new
# release cannot change what CI checks without a commit.
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-100}
SEED=${FUZZ_SEED:-$RANDOM$RANDOM}
work=target/api-fuzz
venv=$work/venv

scripts/ensure-services.sh

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    echo "== installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building"
cargo build --locked --quiet --bin receiver --bin worker

# The spec the receiver generates must be the checked-in one (the fuzzing target is the file).
if ! diff -q <(target/debug/receiver openapi) openapi.json >/dev/null; then
    echo "openapi.json is out of date: run \`cargo run -p receiver -- openapi > openapi.json\`" >&2
    exit 1
fi

suffix=$(python3 -c 'import secrets; print(secrets.token_hex(6))')
database="blitz_fuzz_$suffix"
vhost="fuzz_$suffix"
read -r public_port admin_port worker_port < <(python3 -c '
import socket
sockets = [socket.socket() for _ in range(3)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in sockets))
')
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$database"
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
export AMQP_PREFIX="fuzz_$suffix"
export ADMIN_TOKEN="fuzz-admin-$suffix"
export RECEIVER_ADDR="127.0.0.1:$public_port"
export ADMIN_ADDR="127.0.0.1:$admin_port"
export WORKER_ADDR="127.0.0.1:$worker_port"
export PUBLIC_BASE_URL="http://127.0.0.1:$public_port"
export RUST_LOG="warn,receiver=info,worker=info"
public="http://127.0.0.1:$public_port"
admin="http://127.0.0.1:$admin_port"
logs="$work/logs"
mkdir -p "$logs"

pids=()
cleanup() {
    local status=$?
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" \
        >/dev/null 2>&1 || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    if ((status != 0)); then
        echo "== api-fuzz FAILED (seed $SEED); server errors logged:" >&2
        grep -hE "ERROR|panicked" "$logs"/*.log 2>/dev/null | tail -20 >&2 || true
    fi
    exit "$status"
}
trap cleanup EXIT

rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

echo "== starting receiver ($public, admin $admin) and worker"
target/debug/receiver migrate >"$logs/migrate.log" 2>&1
target/debug/receiver >"$logs/receiver.log" 2>&1 &
pids+=($!)
target/debug/worker >"$logs/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
    if curl -fsS "$admin/readyz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$worker_port/readyz" >/dev/null 2>&1; then
        break
    fi
    sleep 0.5
done
curl -fsS "$admin/readyz" >/dev/null
curl -fsS "http://127.0.0.1:$worker_port/readyz" >/dev/null

# The contest every path points at, with a Coinflow key so the Coinflow endpoint is fuzzed past
# authentication (its key is sent verbatim in `Authorization`).
contest_id=fuzz
coinflow_key="cf-fuzz-$suffix"
secret=$(curl -fsS -X POST "$admin/api/contests" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'content-type: application/json' \
    -d "{\"id\": \"$contest_id\", \"name\": \"Fuzz\", \"exchangeRates\": {\"EUR\": 1.08},
         \"referral\": {\"advocatePoints\": 10, \"friendPoints\": 5, \"pointsPerUnit\": 0.1},
         \"providerSecrets\": {\"coinflow\": \"$coinflow_key\"}}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["webhookSecret"])')

# A recorded purchase under the spec's example order id, so the lookup's 200 is checked too.
curl -fsS -X POST "$public/api/webhooks/purchase/$contest_id" -H "X-Webhook-Secret: $secret" \
    -H 'content-type: application/json' \
    -d '{"email": "jane@example.com", "orderId": "A-1", "amount": "79.99"}' >/dev/null
for _ in $(seq 1 60); do
    curl -fsS "$public/api/webhooks/purchase/$contest_id/A-1" -H "X-Webhook-Secret: $secret" \
        >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "$public/api/webhooks/purchase/$contest_id/A-1" -H "X-Webhook-Secret: $secret" >/dev/null

# The refund webhook takes the same secret: check it answers before fuzzing it (every public
# operation gets the secret in X-Webhook-Secret below, so refunds are fuzzed past authentication).
curl -fsS -X POST "$public/api/webhooks/refund/$contest_id" -H "X-Webhook-Secret: $secret" \
    -H 'content-type: application/json' \
    -d '{"orderId": "A-0", "refundId": "R-0", "amount": "1.00", "reason": "fuzz set-up"}' >/dev/null

config="$work/schemathesis.toml"
cat >"$config" <<EOF
# Written by scripts/api-fuzz.sh.
[parameters]
"path.contestId" = "$contest_id"

[checks.not_a_server_error]
# 503 is documented (broker, database, overload); anything else 5xx is a bug.
expected-statuses = ["2XX", "3XX", "4XX", "503"]
EOF

# Runs from $work so schemathesis's own state (`.schemathesis/`) stays out of the source tree.
# One worker: with more, Python 3.11's `ast` trips over concurrent use inside hypothesis.
schemathesis() {
    (cd "$work" && venv/bin/schemathesis --config-file schemathesis.toml --no-color \
        run "$root/openapi.json" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method \
        --phases examples,coverage,fuzzing \
        --max-examples "$MAX_EXAMPLES" --seed "$SEED" \
        --generation-with-security-parameters false \
        --request-timeout 10 --workers 1 --max-failures 20 \
        --suppress-health-check all \
        --report junit --report-dir report \
        "$@")
}

# Answers schemathesis does not provoke by itself: each must be its status with the JSON error
# envelope (and `Allow` on a 405), sent over a raw socket so nothing is fixed up on the way.
echo "== edge answers (raw sockets)"
python3 - "$public_port" "$admin_port" "$contest_id" "$secret" "$ADMIN_TOKEN" <<'PYTHON' || exit 1
import json, socket, sys, time

public, admin, contest, secret, token = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]

def answer(port, head, body=b""):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head.encode() + body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return int(lines[0].split()[1]), headers, payload, time.monotonic() - started

def request(method, path, headers=(), body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers)
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head + "\r\n", body

purchase = f"/api/webhooks/purchase/{contest}"
cases = [
    (public, request("POST", purchase, [("X-Webhook-Secret", secret), ("Content-Length", "5000000000")]), 413, "payload_too_large"),
    (public, request("POST", purchase, [("X-Webhook-Secret", secret), ("Content-Type", "application/x-www-form-urlencoded")], b"email=a%40b.c"), 415, "unsupported_media_type"),
    (public, request("GET", purchase), 405, "method_not_allowed"),
    (public, request("POST", "/api/webhooks/purchase/%FF", [("X-Webhook-Secret", secret)], b"{}"), 404, "contest_not_found"),
    (public, request("GET", f"{purchase}/%FF", [("X-Webhook-Secret", secret)]), 400, "invalid_field"),
    (public, request("GET", "/no/such/route"), 404, "not_found"),
    (admin, request("DELETE", "/api/contests", [("Authorization", f"Bearer {token}")]), 405, "method_not_allowed"),
    (admin, request("POST", "/api/contests", [("Authorization", f"Bearer {token}"), ("Content-Length", "5000000000")]), 413, "payload_too_large"),
]
failed = False
for port, (head, body), status, code in cases:
    got, headers, payload, took = answer(port, head, body)
    first = head.split("\r\n")[0]
    try:
        envelope = json.loads(payload)
        ok = (got == status and headers.get("content-type") == "application/json"
              and envelope["success"] is False and envelope["error"]["code"] == code
              and (status != 405 or "allow" in headers) and took < 2)
    except (ValueError, KeyError, TypeError):
        ok = False
    print(f"   {'ok  ' if ok else 'FAIL'} {first} -> {got} {payload[:120]!r} ({took * 1000:.0f} ms)")
    failed |= not ok
sys.exit(1 if failed else 0)
PYTHON

# Public listener first: the admin run rotates the secret and changes the contest's settings.
# X-Webhook-Secret authenticates the purchase, signup, refund and lookup operations (a header
# credential decides alone, so the Coinflow key in Authorization does not interfere with them).
echo "== fuzzing the public listener (tag webhooks, seed $SEED)"
status=0
schemathesis --url "$public" --include-tag webhooks --report-junit-path report/webhooks.xml \
    -H "X-Webhook-Secret: $secret" -H "Authorization: $coinflow_key" || status=1

echo "== fuzzing the admin listener (tag admin, seed $SEED)"
schemathesis --url "$admin" --include-tag admin --report-junit-path report/admin.xml \
    -H "Authorization: Bearer $ADMIN_TOKEN" || status=1

if grep -qE "panicked" "$logs"/*.log; then
    echo "a service panicked during fuzzing" >&2
    status=1
fi
exit "$status"
