#!/usr/bin/env bash
# Installs the system packages the tests, the demo and the benchmarks use, with apt-get.
# Each one is a real component the tests run: the registry server, the peer tools
# for interop (skopeo, umoci, runc, crun, bwrap, btrfs-progs), busybox for the
# test image, and iproute2/tmux for the network and terminal tests.
set -euo pipefail

packages=(
    btrfs-progs      # mkfs.btrfs for the loop-mounted test filesystem, and the interop peer
    docker-registry  # the real distribution registry server the fetch tests pull from
    skopeo umoci     # peers of fetch-image and unpack-layers
    runc crun bubblewrap  # peers of nsenter-run
    busybox-static   # the small real image the pipeline tests and demo --offline use
    apache2-utils    # htpasswd -B, for the registry's Basic auth mode
    openssl          # keys and certificates for the TLS and token-auth registry modes
    iproute2 tmux zstd hyperfine time util-linux
    sudo             # the README's two commands are typed with sudo
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to install: ${missing[*]}" >&2
    exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
