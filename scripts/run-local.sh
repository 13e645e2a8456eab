#!/usr/bin/env bash
# Sets up this machine and runs Shorthorn's single-machine mode.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release -p shorthorn
# `shorthorn local up` and the guided demo arrive with issue #7; until then this shows the CLI.
./target/release/shorthorn --help
