#!/usr/bin/env bash
# Installs the vendors' official client libraries that tests/simulators/tests/official_clients.rs
# runs against the simulators: node-zendesk, freshdesk-api, jsforce and
# facebook-nodejs-business-sdk from npm (pinned in tests/clients/package-lock.json, into
# tests/clients/node_modules) and python-telegram-bot from
# PyPI (pinned in tests/clients/requirements.txt, into tests/clients/.venv). Idempotent: a part
# whose pins did not change since its last install is skipped. Needs node/npm (>= 20) and
# python3 with venv, which this machine kind has.
set -euo pipefail
cd "$(dirname "$0")/../tests/clients"

stamp_of() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

npm_stamp=$(stamp_of package.json package-lock.json)
if [[ "$(cat node_modules/.switchboard-stamp 2>/dev/null)" != "$npm_stamp" ]]; then
    echo "clients.sh: installing the npm clients into tests/clients/node_modules" >&2
    npm ci --no-audit --no-fund --loglevel=error
    echo "$npm_stamp" > node_modules/.switchboard-stamp
fi

py_stamp=$(stamp_of requirements.txt)
if [[ "$(cat .venv/.switchboard-stamp 2>/dev/null)" != "$py_stamp" ]]; then
    echo "clients.sh: installing python-telegram-bot into tests/clients/.venv" >&2
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$py_stamp" > .venv/.switchboard-stamp
fi
echo "clients.sh: official clients ready in tests/clients" >&2
