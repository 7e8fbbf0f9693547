#!/usr/bin/env bash
# Runs every test: builds the host, builds the plugins to wasm components with the host's own
# `plugin build` (which installs the wasm toolchain when it is missing), then runs the unit and
# end-to-end tests of the whole workspace against those components.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p switchboard --bin switchboard

plugin_dir="$PWD/target/test-plugins"
mkdir -p "$plugin_dir"
for crate in plugins/telegram plugins/zendesk plugins/salesforce plugins/freshdesk plugins/rt tests/plugins/misbehave tests/plugins/rulebreaker tests/plugins/rulebreaker-desk host/tests/oauth_support/oauth-helpdesk; do
    component=$(target/debug/switchboard plugin build "$crate" | tail -n 1)
    cp "$component" "$plugin_dir/$(basename "$crate").wasm"
done
export SWITCHBOARD_PLUGIN_DIR="$plugin_dir"

# The Request Tracker plugin's tests run against a real RT 5 from Debian's packages: install
# it now (as root) when it is missing. SWITCHBOARD_SKIP_RT=1 skips those tests instead.
if [[ "${SWITCHBOARD_SKIP_RT:-}" != 1 ]]; then
    scripts/rt.sh install
fi

scripts/clients.sh  # the official clients that tests/simulators/tests/official_clients.rs runs
cargo test --workspace
