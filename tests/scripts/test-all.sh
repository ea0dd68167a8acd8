#!/usr/bin/env bash
# Every test of the project, as root, against real components.
# Installs what the tests need first (see install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test-all: the tests make mounts, namespaces and loop devices: run as root (sudo $0)" >&2
    exit 1
fi
tests/scripts/install-deps.sh
cargo build --workspace --bins
cargo test --workspace --no-fail-fast
