#!/usr/bin/env bash
# A local RabbitMQ cluster for development and the cluster fault tests: N nodes (default 3) of the
# Debian rabbitmq-server on this machine, no Docker. Each node has its own name, ports, data and
# log directories, and the cluster has its own Erlang cookie, so neither this script nor its CLI
# calls can reach (let alone change) the machine's own node (rabbit@localhost on 5672).
#
#   scripts/rabbitmq-cluster.sh start            start and cluster the nodes; prints AMQP_URL
#   scripts/rabbitmq-cluster.sh url              the AMQP_URL listing every node
#   scripts/rabbitmq-cluster.sh status           which nodes run, and the cluster's view
#   scripts/rabbitmq-cluster.sh stop             stop every node (data kept; `start` resumes)
#   scripts/rabbitmq-cluster.sh destroy          stop every node and delete the data
#   scripts/rabbitmq-cluster.sh stop-node I      graceful stop of node I (1-based)
#   scripts/rabbitmq-cluster.sh kill-node I      SIGKILL node I
#   scripts/rabbitmq-cluster.sh start-node I     (re)start node I; it rejoins the cluster
#   scripts/rabbitmq-cluster.sh pid I            OS pid of node I
#   scripts/rabbitmq-cluster.sh ctl I ARGS...    rabbitmqctl ARGS against node I
#   scripts/rabbitmq-cluster.sh queues-ctl I ARGS...  rabbitmq-queues ARGS against node I
#
# Settings (environment):
#   BLITZ_CLUSTER_DIR    data, logs, cookie, pids      (default: target/rabbitmq-cluster)
#   BLITZ_CLUSTER_NODES  how many nodes                (default: 3)
#   BLITZ_CLUSTER_PORT   AMQP port of node 1; node I listens on PORT+I-1 and uses the Erlang
#                        distribution port PORT+10+I-1 (default: 5701 → 5701-5703, 5711-5713)
#   BLITZ_CLUSTER_NAME   node names are NAME-I@localhost (default: blitz)
# The nodes have a user `blitz` (password `blitz`) with all rights on the vhost `blitz`; the
# printed AMQP_URL uses them. The management plugin is off (no HTTP ports).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${BLITZ_CLUSTER_DIR:-$here/target/rabbitmq-cluster}"
count="${BLITZ_CLUSTER_NODES:-3}"
base="${BLITZ_CLUSTER_PORT:-5701}"
name="${BLITZ_CLUSTER_NAME:-blitz}"
server=/usr/lib/rabbitmq/bin/rabbitmq-server
cli_dir=/usr/lib/rabbitmq/bin

die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }

# Refuse anything that could be mistaken for the machine's own node.
[[ "$name" != rabbit ]] || die "BLITZ_CLUSTER_NAME must not be 'rabbit' (the machine's own node)"
for ((i = 1; i <= count; i++)); do
    for port in $((base + i - 1)) $((base + 10 + i - 1)); do
        case $port in 5672 | 25672 | 4369 | 15672 | 35672) die "port $port belongs to the machine's own node" ;; esac
    done
done
[[ -x $server ]] || die "rabbitmq-server is not installed (apt-get install rabbitmq-server)"

node_name() { echo "$name-$1@localhost"; }
amqp_port() { echo $((base + $1 - 1)); }
dist_port() { echo $((base + 10 + $1 - 1)); }
node_dir() { echo "$dir/node-$1"; }

# Everything every node and CLI call shares: its own HOME (so its own Erlang cookie), its own
# env file instead of /etc/rabbitmq/rabbitmq-env.conf (which names the machine's node).
common_env() {
    export HOME="$dir/home"
    export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export ERL_EPMD_ADDRESS=127.0.0.1
}

prepare() {
    mkdir -p "$dir/home"
    if [[ ! -f $dir/home/.erlang.cookie ]]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/home/.erlang.cookie"
        chmod 400 "$dir/home/.erlang.cookie"
    fi
    : >"$dir/rabbitmq-env.conf"
    echo "[]." >"$dir/enabled_plugins"
    for ((i = 1; i <= count; i++)); do
        local d
        d=$(node_dir "$i")
        mkdir -p "$d/log"
        {
            echo "listeners.tcp.default = 127.0.0.1:$(amqp_port "$i")"
            echo "loopback_users = none"
            # Join the first node on a fresh start (a node with data rejoins its cluster anyway).
            echo "cluster_formation.peer_discovery_backend = classic_config"
            for ((j = 1; j <= count; j++)); do
                echo "cluster_formation.classic_config.nodes.$j = $(node_name "$j")"
            done
            # A killed node must not stall the survivors' work; they notice it in seconds.
            echo "cluster_partition_handling = pause_minority"
            echo "log.file.level = info"
        } >"$d/rabbitmq.conf"
    done
}

ctl() {
    local i=$1
    shift
    common_env
    "$cli_dir/rabbitmqctl" -n "$(node_name "$i")" "$@"
}

queues_ctl() {
    local i=$1
    shift
    common_env
    "$cli_dir/rabbitmq-queues" -n "$(node_name "$i")" "$@"
}

is_running() {
    local pidfile
    pidfile="$(node_dir "$1")/pid"
    [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

launch_node() {
    local i=$1 d
    d=$(node_dir "$i")
    if is_running "$i"; then
        return 0
    fi
    (
        common_env
        export RABBITMQ_NODENAME
        RABBITMQ_NODENAME=$(node_name "$i")
        export RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_MNESIA_BASE="$d/mnesia"
        export RABBITMQ_LOG_BASE="$d/log"
        export RABBITMQ_DIST_PORT
        RABBITMQ_DIST_PORT=$(dist_port "$i")
        export RABBITMQ_CTL_DIST_PORT_MIN=$((RABBITMQ_DIST_PORT + 10000))
        export RABBITMQ_CTL_DIST_PORT_MAX=$((RABBITMQ_DIST_PORT + 10010))
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        cd "$d"
        # The start script stays as a wrapper (it turns SIGTERM into a clean stop); its pid
        # stands for the node until the node itself reports its own (`await_node`).
        setsid "$server" </dev/null >>"$d/log/stdout.log" 2>&1 &
        echo $! >"$d/pid"
    )
}

await_node() {
    local i=$1
    for _ in $(seq 1 120); do
        if ! is_running "$i"; then
            tail -n 30 "$(node_dir "$i")/log/stdout.log" >&2 || true
            die "node $i exited during start-up"
        fi
        if ctl "$i" -q await_startup --timeout 5 >/dev/null 2>&1; then
            # The Erlang VM's own pid: what `kill-node` must SIGKILL.
            ctl "$i" -q eval 'os:getpid().' | tr -dc '0-9' >"$(node_dir "$i")/pid"
            return 0
        fi
        sleep 0.5
    done
    die "node $i did not start in 60 s"
}

start_node() {
    prepare_if_needed
    launch_node "$1"
    await_node "$1"
}

prepare_if_needed() {
    [[ -f $dir/enabled_plugins ]] || prepare
}

cluster_size() {
    # Running nodes as node 1 (or the first running one) sees them.
    local i
    for ((i = 1; i <= count; i++)); do
        if is_running "$i"; then
            ctl "$i" -q cluster_status --formatter json 2>/dev/null |
                python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))'
            return
        fi
    done
    echo 0
}

start() {
    prepare
    # The first node first: the others find it through classic_config and join it.
    launch_node 1
    await_node 1
    for ((i = 2; i <= count; i++)); do launch_node "$i"; done
    for ((i = 2; i <= count; i++)); do await_node "$i"; done
    # A node that came up on its own (it raced the first) is joined explicitly.
    for ((i = 2; i <= count; i++)); do
        if ! ctl "$i" -q cluster_status --formatter json | grep -q "\"$(node_name 1)\""; then
            ctl "$i" -q stop_app
            ctl "$i" -q reset
            ctl "$i" -q join_cluster "$(node_name 1)"
            ctl "$i" -q start_app
        fi
    done
    local running
    running=$(cluster_size)
    [[ $running == "$count" ]] || die "expected $count running nodes in the cluster, found $running"
    if ! ctl 1 -q list_vhosts | grep -qx blitz; then
        ctl 1 -q add_vhost blitz
    fi
    if ! ctl 1 -q list_users | grep -q '^blitz'; then
        ctl 1 -q add_user blitz blitz >/dev/null
    fi
    ctl 1 -q set_permissions -p blitz blitz '.*' '.*' '.*'
    echo "cluster of $count nodes running; AMQP_URL=$(url)" >&2
    url
}

url() {
    local urls=() i
    for ((i = 1; i <= count; i++)); do
        urls+=("amqp://blitz:blitz@127.0.0.1:$(amqp_port "$i")/blitz")
    done
    (IFS=,; echo "${urls[*]}")
}

stop_node() {
    local i=$1
    if is_running "$i"; then
        ctl "$i" -q stop >/dev/null 2>&1 || kill -TERM "$(cat "$(node_dir "$i")/pid")" 2>/dev/null || true
        for _ in $(seq 1 120); do
            is_running "$i" || break
            sleep 0.5
        done
    fi
    rm -f "$(node_dir "$i")/pid"
}

kill_node() {
    local i=$1 pidfile
    pidfile="$(node_dir "$i")/pid"
    [[ -f $pidfile ]] || die "node $i is not running"
    kill -KILL "$(cat "$pidfile")"
    for _ in $(seq 1 100); do
        kill -0 "$(cat "$pidfile")" 2>/dev/null || break
        sleep 0.1
    done
    rm -f "$pidfile"
}

stop() {
    local i
    # Last node first, so the first node (which the others join) goes down last.
    for ((i = count; i >= 1; i--)); do stop_node "$i"; done
}

status() {
    local i
    for ((i = 1; i <= count; i++)); do
        if is_running "$i"; then
            echo "node $i $(node_name "$i") amqp=127.0.0.1:$(amqp_port "$i") pid=$(cat "$(node_dir "$i")/pid") running"
        else
            echo "node $i $(node_name "$i") amqp=127.0.0.1:$(amqp_port "$i") stopped"
        fi
    done
    echo "running in the cluster: $(cluster_size)"
}

command="${1:-}"
shift || true
case "$command" in
start) start ;;
url) url ;;
status) status ;;
stop) stop ;;
destroy)
    stop
    # Only ever our own directory: it must hold our marker files.
    if [[ -f $dir/enabled_plugins && -d $dir/home ]]; then
        rm -rf "$dir"
    fi
    ;;
stop-node) stop_node "${1:?node number}" ;;
kill-node) kill_node "${1:?node number}" ;;
start-node) start_node "${1:?node number}" ;;
pid) cat "$(node_dir "${1:?node number}")/pid" ;;
ctl) ctl "$@" ;;
queues-ctl) queues_ctl "$@" ;;
*)
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
