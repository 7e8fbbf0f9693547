#!/usr/bin/env bash
# The first thing to run: builds Switchboard, then `switchboard demo --once` builds the Telegram
# and Zendesk plugins, starts the hub on SQLite with both vendor simulators, sets everything up
# through the admin API and plays a scripted conversation both ways. The last line starts with
# `demo ok:` when every expected effect was seen (exit 0), or `demo FAILED:` (exit 1).
#
# Extra arguments go to `switchboard demo`; without `--once` the demo keeps running so you can
# poke at it:  scripts/demo.sh --interactive
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p switchboard --bin switchboard

if [[ "${1:-}" == "--interactive" ]]; then
    shift
    exec target/debug/switchboard demo "$@"
fi
exec target/debug/switchboard demo --once "$@"
