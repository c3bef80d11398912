#!/usr/bin/env bash
# Validates docker-compose.yml without a Docker engine (Debian's docker-compose parses and
# interpolates the file; `config` needs no daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-compose >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
export ADMIN_TOKEN="${ADMIN_TOKEN:-compose-check}"
docker-compose -f docker-compose.yml config -q
echo "docker-compose.yml is valid"
