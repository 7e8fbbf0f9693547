#!/usr/bin/env bash
# The first thing to run: builds Switchboard, then `switchboard demo --once` builds the Telegram
# and helpdesk plugins, starts the hub on SQLite with the Telegram simulator and the helpdesk,
# sets everything up through the admin API and plays a scripted conversation both ways. The last
# line starts with `demo ok:` when every expected effect was seen (exit 0), or `demo FAILED:`
# (exit 1).
#
# The helpdesk is Zendesk's simulator unless a first argument names another:
#   scripts/demo.sh freshdesk | salesforce | rt      (rt: a real RT 5; `scripts/rt.sh install`)
# Other arguments go to `switchboard demo`; with `--interactive` the demo keeps running so you
# can poke at it:  scripts/demo.sh --interactive   or   scripts/demo.sh rt --interactive
set -euo pipefail
cd "$(dirname "$0")/.."

helpdesk=()
case "${1:-}" in
    zendesk | freshdesk | salesforce | rt) helpdesk=(--helpdesk "$1"); shift ;;
esac

cargo build -p switchboard --bin switchboard

if [[ "${1:-}" == "--interactive" ]]; then
    shift
    exec target/debug/switchboard demo "${helpdesk[@]}" "$@"
fi
exec target/debug/switchboard demo --once "${helpdesk[@]}" "$@"
