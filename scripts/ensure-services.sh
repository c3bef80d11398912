#!/usr/bin/env bash
# Makes sure the local PostgreSQL and RabbitMQ are installed and running (the no-Docker path).
# Safe to run repeatedly; installs from Debian's packages only when a server is missing.
set -euo pipefail

need_install=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_install+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || need_install+=(rabbitmq-server)
if ((${#need_install[@]})); then
    echo "installing ${need_install[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
fi

if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "starting RabbitMQ"
    rabbitmq-server -detached
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p 5432 && rabbitmqctl -q await_startup >/dev/null 2>&1; then
        exit 0
    fi
    sleep 1
done
echo "PostgreSQL or RabbitMQ did not come up" >&2
exit 1
