#!/usr/bin/env bash
# Snapshot speed: btrfs-snap against `btrfs subvolume snapshot`, in the same run, on a
# subvolume holding a small rootfs (busybox + /etc), a 10 MiB one and a 1 GiB one (with
# 20,000 small files besides), with `cp -a` and `cp -a --reflink=always` beside them.
# A snapshot copies one root block whatever the size, so its time must stay flat.
#
#   sudo btrfs-snap/bench/snapshot.sh [BTRFS_SNAP_BINARY]
#
# Needs root, hyperfine, btrfs-progs, busybox, python3. Works on a throwaway loop-mounted
# btrfs in a temporary directory and removes it on exit. Prints a table of ratios.
set -euo pipefail

bin=${1:-$(dirname "$0")/../../target/release/btrfs-snap}
if [ ! -x "$bin" ]; then
    echo "snapshot.sh: no btrfs-snap binary at $bin (cargo build --release -p btrfs-snap, or pass its path)" >&2
    exit 1
fi
bin=$(realpath "$bin")
for tool in hyperfine btrfs mkfs.btrfs busybox python3; do
    command -v "$tool" >/dev/null || { echo "snapshot.sh: $tool is missing (tests/scripts/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
mnt=$work/mnt
cleanup() {
    if mountpoint -q "$mnt"; then umount "$mnt"; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "snapshot.sh: making a 4 GiB sparse loop btrfs in $work" >&2
truncate -s 4G "$work/fs.img"
mkfs.btrfs -q "$work/fs.img" >/dev/null
mkdir "$mnt"
mount -o loop "$work/fs.img" "$mnt"   # -o loop detaches the device on umount (autoclear)

rootfs() {   # a small real rootfs: busybox and its applet links, and this host's /etc
    mkdir -p "$1/bin" "$1/etc"
    cp /bin/busybox "$1/bin/busybox"
    "$1/bin/busybox" --install -s "$1/bin"
    cp -a /etc/. "$1/etc/" 2>/dev/null || true   # unreadable host files do not matter here
}
fill() {   # $1: dir, $2: number of 1 MiB files
    mkdir -p "$1/data"
    for i in $(seq "$2"); do head -c 1048576 /dev/urandom >"$1/data/f$i"; done
}

echo "snapshot.sh: filling the subvolumes" >&2
"$bin" create "$mnt/rootfs" && rootfs "$mnt/rootfs"
"$bin" create "$mnt/10m" && rootfs "$mnt/10m" && fill "$mnt/10m" 5
"$bin" create "$mnt/1g" && rootfs "$mnt/1g" && fill "$mnt/1g" 1024
mkdir "$mnt/1g/small" && for d in $(seq 20); do
    mkdir "$mnt/1g/small/$d" && for f in $(seq 1000); do echo "$d $f" >"$mnt/1g/small/$d/$f"; done
done
sync
du -sh "$mnt/rootfs" "$mnt/10m" "$mnt/1g" >&2

results=$work/results
mkdir "$results"
bench() {   # $1: name, $2: source, $3: runs
    local src=$mnt/$2 dst=$mnt/snap-$1
    local del="if [ -e $dst ]; then btrfs subvolume delete -c $dst >/dev/null 2>&1 || rm -rf $dst; fi"
    hyperfine -N --style basic --runs "$3" --warmup 2 --prepare "sh -c '$del; sync'" \
        --export-json "$results/$1.json" \
        -n "btrfs-snap snapshot" "$bin snapshot $src $dst" \
        -n "btrfs subvolume snapshot" "btrfs subvolume snapshot $src $dst" \
        -n "cp -a --reflink=always" "cp -a --reflink=always $src $dst" \
        -n "cp -a" "cp -a $src $dst" >&2
    sh -c "$del"
}
bench rootfs rootfs 30
bench 10m 10m 30
bench 1g 1g 10

python3 - "$results" <<'EOF'
import json, sys, os
d = sys.argv[1]
mean = {}
for case in ("rootfs", "10m", "1g"):
    for r in json.load(open(os.path.join(d, case + ".json")))["results"]:
        mean[(case, r["command"])] = r["mean"] * 1000
cmds = ["btrfs-snap snapshot", "btrfs subvolume snapshot", "cp -a --reflink=always", "cp -a"]
print(f"{'mean ms':28}" + "".join(f"{c:>10}" for c in ("rootfs", "10 MiB", "1 GiB")))
for c in cmds:
    print(f"{c:28}" + "".join(f"{mean[(k, c)]:10.2f}" for k in ("rootfs", "10m", "1g")))
ours, peer = "btrfs-snap snapshot", "btrfs subvolume snapshot"
print()
for k in ("rootfs", "10m", "1g"):
    print(f"{k:>6}: btrfs-snap / btrfs-progs = {mean[(k, ours)] / mean[(k, peer)]:.2f}x; "
          f"cp -a / btrfs-snap = {mean[(k, 'cp -a')] / mean[(k, ours)]:.1f}x; "
          f"cp --reflink / btrfs-snap = {mean[(k, 'cp -a --reflink=always')] / mean[(k, ours)]:.1f}x")
print(f"flatness: btrfs-snap 1 GiB / 10 MiB = {mean[('1g', ours)] / mean[('10m', ours)]:.2f}x "
      f"(btrfs-progs: {mean[('1g', peer)] / mean[('10m', peer)]:.2f}x)")
EOF
