#!/usr/bin/env bash
# The project's benchmarks: each tool against the tool people use today for the same job,
# on the same inputs, in the same run, reported as ratios with the targets beside them.
#
#   sudo tests/bench/run.sh           full run (about 20 minutes): docs/benchmarks.md + charts
#   sudo tests/bench/run.sh --smoke   tiny inputs, two runs each (seconds): CI keeps it working
#
#   --runs N       runs per measurement (default: 10, fewer for the slowest; --smoke: 2)
#   --out FILE     the report (default docs/benchmarks.md); the SVG charts go beside it
#   --bin-dir DIR  use the binaries in DIR instead of building them (cargo build --release)
#   --inputs DIR   cache of the generated images (default target/bench-inputs)
#   --keep         keep the scratch directory and print where it is
#
# In order: builds the inputs offline (tests/src/bin/bench-image.rs); serves them from
# Debian's docker-registry on 127.0.0.1; checks which tools really work (one that does not
# yet is reported "not available" and the rest still runs); times each comparison with
# hyperfine (median, min and max of several runs) and peak RSS with GNU time; turns the
# results into the report (tests/src/bin/bench-report.rs).
#
# Everything it sets up is undone on exit: it runs in its own mount namespace (its tmpfs and
# loop btrfs vanish with it, and the exit trap unmounts them anyway), the registry is
# stopped, the loop device detached, the scratch directory removed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
self="$repo/tests/bench/run.sh"
args=("$@")

smoke=0 runs="" out="$repo/docs/benchmarks.md" bin_dir="" keep=0
inputs="${CARGO_TARGET_DIR:-$repo/target}/bench-inputs"
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --runs) runs="${2:?--runs needs a number}"; shift ;;
        --out) out="${2:?--out needs a file}"; shift ;;
        --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift ;;
        --inputs) inputs="${2:?--inputs needs a directory}"; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$self"; exit 0 ;;
        *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "needs root: it mounts a tmpfs and a loop btrfs and starts containers (sudo $0)"

# Without these nothing can be measured. The peers being compared are probed later, and one
# that does not run is reported "not available".
for cmd in hyperfine docker-registry skopeo mkfs.btrfs btrfs losetup mount umount unshare \
    chroot tar cp ss; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found (tests/scripts/install-deps.sh installs what the benchmarks use)"
done
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) not found, needed for peak RSS (apt-get install time)"

# A private mount namespace: the tmpfs, the loop btrfs and the cgroup view crun needs below
# belong to this run alone and cannot outlive it.
if [ -z "${BENCH_IN_MOUNTNS:-}" ]; then
    BENCH_IN_MOUNTNS=1 exec unshare --mount --propagation private -- "$self" "${args[@]}"
fi

if [ "$smoke" = 1 ]; then
    main_shape=tiny scaling_shapes=(tiny) snapshot_sizes=(1 4) runs=${runs:-2}
    tmpfs_size=1g btrfs_size=2G
else
    main_shape=realistic scaling_shapes=(small realistic large manyfiles)
    snapshot_sizes=(10 100 1024) runs=${runs:-10} tmpfs_size=12g btrfs_size=24G
fi
# The slow measurements (a 500 MB unpack, 40k files, copying 1 GiB, the whole chain) get
# fewer runs and no warm-up run.
slow_runs=$(( runs <= 2 ? runs : runs >= 10 ? 3 : 2 ))
start_runs=$(( runs * 3 ))

if [ -z "$bin_dir" ]; then
    say "building the workspace (release)"
    (cd "$repo" && cargo build --release --workspace --bins --quiet)
    bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
fi
bin_dir=$(cd "$bin_dir" && pwd)
for tool in bench-image bench-report; do
    [ -x "$bin_dir/$tool" ] || die "'$bin_dir/$tool' not found: cargo build --workspace --bins"
done

# Absolute paths: the helpers and hyperfine's commands run from other directories.
mkdir -p "$inputs" "$(dirname "$out")"
inputs=$(cd "$inputs" && pwd)
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

work=$(mktemp -d /var/tmp/bench.XXXXXX)
results="$work/results" tmpfs="$work/tmpfs" btrfs_mnt="$work/btrfs" helpers="$work/bin"
mkdir -p "$results" "$tmpfs" "$btrfs_mnt" "$helpers" "$work/probe"
registry_pid=""

cleanup() {
    local status=$?
    set +e
    for id in bench-runc bench-runc-probe; do
        [ -e "/run/runc/$id" ] && runc delete -f "$id"
    done
    for id in bench-crun bench-crun-probe; do
        [ -e "/run/crun/$id" ] && crun delete -f "$id"
    done
    if [ -n "$registry_pid" ] && kill -0 "$registry_pid" 2>/dev/null; then
        kill "$registry_pid"
        wait "$registry_pid"
    fi
    # mount -o loop set the loop device to autoclear: unmounting also detaches it.
    mountpoint -q "$btrfs_mnt" && umount "$btrfs_mnt"
    mountpoint -q "$tmpfs" && umount "$tmpfs"
    if [ "$keep" = 1 ]; then
        say "scratch directory kept: $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------
# Inputs

say "inputs (built once, cached in $inputs)"
printf 'shape\tcompressed\ttar\tfiles\n' >"$results/sizes.tsv"
for shape in $(printf '%s\n' tiny "$main_shape" "${scaling_shapes[@]}" | awk '!seen[$0]++'); do
    "$bin_dir/bench-image" image "$shape" "$inputs/$shape" >>"$results/sizes.tsv"
done
"$bin_dir/bench-image" bundle "$work/bundle"
bundle="$work/bundle" rootfs="$work/bundle/rootfs"

mount -t tmpfs -o "size=$tmpfs_size" bench-tmpfs "$tmpfs"
truncate -s "$btrfs_size" "$work/btrfs.img"
mkfs.btrfs -q "$work/btrfs.img" >"$work/mkfs.log" 2>&1 || die "mkfs.btrfs failed: $(tail -1 "$work/mkfs.log")"
mount -o loop "$work/btrfs.img" "$btrfs_mnt"

# crun refuses the hybrid cgroup layout (v1 controllers plus a v2 tree at
# /sys/fs/cgroup/unified); hiding the v2 tree in this namespace makes it a plain v1 layout,
# which every runtime here handles.
if mountpoint -q /sys/fs/cgroup/unified; then
    umount /sys/fs/cgroup/unified
fi

# The registry: Debian's docker-registry (distribution) on a free loopback port.
port=""
for _ in $(seq 50); do
    candidate=$(( 20000 + RANDOM % 20000 ))
    if [ -z "$(ss -Htln "sport = :$candidate")" ]; then port=$candidate; break; fi
done
[ -n "$port" ] || die "no free port found on 127.0.0.1"
registry="127.0.0.1:$port"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry
EOF
docker-registry serve "$work/registry.yml" 2>"$work/registry.log" &
registry_pid=$!
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    die "the registry did not start: $(tail -3 "$work/registry.log")"

# Seeding the registry is preparation, not measured: skopeo pushes the layouts as they are.
for shape in $(cut -f1 "$results/sizes.tsv" | tail -n +2); do
    skopeo copy -q --dest-tls-verify=false "oci:$inputs/$shape:latest" \
        "docker://$registry/bench/$shape:latest"
done
source_ref() { echo "docker://$registry/bench/$1:latest"; }

# ---------------------------------------------------------------------------------------
# Helpers that hyperfine runs (it runs commands without a shell, -N, so that starting a
# shell is not part of a millisecond-scale measurement).

# clean PATH...: removes each path, a btrfs subvolume with `btrfs subvolume delete` and then
# waits for the btrfs cleaner to finish dropping it (`btrfs subvolume sync`); flushes last.
# No run pays for the previous run's writeback or cleanup, which otherwise land in the next
# snapshot's transaction commit.
cat >"$helpers/clean" <<'EOF'
#!/bin/sh
set -eu
for p in "$@"; do
    if [ -d "$p" ] && [ "$(stat -c %i "$p")" = 256 ] && [ "$(stat -f -c %T "$p")" = btrfs ]; then
        btrfs subvolume delete --commit-after "$p" >/dev/null
        btrfs subvolume sync "$(dirname "$p")" >/dev/null
    elif [ -e "$p" ] || [ -L "$p" ]; then
        rm -rf "$p"
    fi
done
sync
EOF
chmod +x "$helpers/clean"

# tar-SHAPE DEST: the layers of SHAPE extracted in order with GNU tar, the baseline that
# checks no digest and knows no whiteout.
for shape in $(cut -f1 "$results/sizes.tsv" | tail -n +2); do
    {
        echo '#!/bin/sh'
        echo 'set -eu'
        echo 'mkdir "$1"'
        "$bin_dir/bench-image" layers "$inputs/$shape" | while read -r blob; do
            printf 'tar --numeric-owner -xzf %q -C "$1"\n' "$blob"
        done
    } >"$helpers/tar-$shape"
    chmod +x "$helpers/tar-$shape"
done

# ---------------------------------------------------------------------------------------
# Which tools work. Each probe checks the effect, not only the exit status, so that a
# tool still being written (an empty main) is not timed as if it were fast.

printf 'tool\treason\n' >"$results/unavailable.tsv"
declare -A works=()
probe_log="$work/probe.log"

# probe NAME EXPECTED CHECK -- CMD...: runs CMD (its output to the probe log), then CHECK (a
# shell condition on the result); NAME works when both succeed. EXPECTED says in words what
# CHECK looks for, for the report.
probe() {
    local name="$1" expected="$2" check="$3"; shift 4
    local reason=""
    if ! timeout 120 "$@" >"$probe_log" 2>&1; then
        reason=$(grep -v '^$' "$probe_log" | tail -1 | cut -c1-200)
        reason="failed: ${reason:-no message}"
    elif ! eval "$check"; then
        reason="exited 0, but $expected"
    fi
    if [ -z "$reason" ]; then
        works[$name]=1
        say "works: $name"
    else
        say "not available: $name: $reason"
        printf '%s\t%s\n' "$name" "$reason" >>"$results/unavailable.tsv"
    fi
}

p="$work/probe"
probe fetch-image "no layout, or no digest on stdout" \
    '[ -f "$p/layout/index.json" ] && grep -Eq "^sha256:[0-9a-f]{64}$" "$probe_log"' -- \
    "$bin_dir/fetch-image" -q "$(source_ref tiny)" "oci:$p/layout:latest"
probe "skopeo copy" "no layout" '[ -f "$p/skopeo/index.json" ]' -- \
    skopeo copy -q --src-tls-verify=false "$(source_ref tiny)" "oci:$p/skopeo:latest"
probe unpack-layers "no config.json and rootfs, or the whiteouts not applied" \
    '[ -f "$p/bundle/config.json" ] && [ -f "$p/bundle/rootfs/bin/busybox" ] && [ ! -e "$p/bundle/rootfs/usr/share/doc/p0001" ]' -- \
    "$bin_dir/unpack-layers" -q --image "$inputs/tiny:latest" "$p/bundle"
mkdir "$p/rootfs-only"
probe "unpack-layers --rootfs-only" "no rootfs written into the directory" \
    '[ -f "$p/rootfs-only/bin/busybox" ] && [ ! -e "$p/rootfs-only/config.json" ]' -- \
    "$bin_dir/unpack-layers" -q --rootfs-only --image "$inputs/tiny:latest" "$p/rootfs-only"
probe "umoci unpack" "no rootfs" '[ -f "$p/umoci/rootfs/bin/busybox" ]' -- \
    umoci unpack --image "$inputs/tiny:latest" "$p/umoci"
probe "tar -xzf" "no rootfs" '[ -f "$p/tar/bin/busybox" ]' -- "$helpers/tar-tiny" "$p/tar"
probe btrfs-snap "no subvolume made" \
    'btrfs subvolume show "$btrfs_mnt/probe-b" >/dev/null 2>"$probe_log"' -- \
    sh -c '"$1" create "$2/probe-a" && "$1" snapshot "$2/probe-a" "$2/probe-b"' \
    sh "$bin_dir/btrfs-snap" "$btrfs_mnt"
"$helpers/clean" "$btrfs_mnt/probe-b" "$btrfs_mnt/probe-a"
probe "btrfs subvolume snapshot" "no subvolume made" \
    'btrfs subvolume show "$btrfs_mnt/probe-d" >/dev/null 2>"$probe_log"' -- sh -c \
    'btrfs subvolume create "$1/probe-c" && btrfs subvolume snapshot "$1/probe-c" "$1/probe-d"' \
    sh "$btrfs_mnt"
"$helpers/clean" "$btrfs_mnt/probe-d" "$btrfs_mnt/probe-c"
for how in rootfs bundle; do
    target=$rootfs
    [ "$how" = bundle ] && target=$bundle
    probe "nsenter-run --$how" "the command's output is missing" 'grep -qx bench-probe "$probe_log"' -- \
        "$bin_dir/nsenter-run" "--$how" "$target" -- /bin/echo bench-probe
done
probe "crun run" "" true -- crun run --bundle "$bundle" bench-crun-probe
probe "runc run" "" true -- runc run --bundle "$bundle" bench-runc-probe
probe bwrap "the command's output is missing" 'grep -qx bench-probe "$probe_log"' -- \
    bwrap --unshare-all --bind "$rootfs" / --proc /proc --dev /dev /bin/echo bench-probe
probe "unshare + chroot" "the command's output is missing" 'grep -qx bench-probe "$probe_log"' -- \
    unshare --mount --uts --ipc --net --pid --fork --mount-proc="$rootfs/proc" \
    chroot "$rootfs" /bin/echo bench-probe
probe "cp -a" "" true -- cp -a "$rootfs" "$btrfs_mnt/probe-cp"
probe "cp -a --reflink=always" "" true -- \
    cp -a --reflink=always "$btrfs_mnt/probe-cp" "$btrfs_mnt/probe-reflink"
"$helpers/clean" "$btrfs_mnt/probe-cp" "$btrfs_mnt/probe-reflink"

# ---------------------------------------------------------------------------------------
# Measurements

# bench GROUP RUNS WARMUP PREPARE [NAME TOOL COMMAND]...: hyperfine over the commands whose
# TOOL works, exported to GROUP+roundN.json. PREPARE runs before every run. With nine runs
# or more, the runs are split into three rounds with the order of the commands rotated, so
# that a change of load on the machine halfway does not favour whichever command came first
# (the report merges the rounds). A command that fails in some run does not stop the others
# (--ignore-failure): its exit codes are in the export and the report shows the failure
# instead of a figure.
bench() {
    local group="$1" n="$2" warmup="$3" prepare="$4"; shift 4
    local names=() words=()
    while [ $# -gt 0 ]; do
        if [ -n "${works[$2]:-}" ]; then
            names+=("$1")
            words+=("$3")
        fi
        shift 3
    done
    local count=${#names[@]} rounds=1 r k i
    if [ "$count" -eq 0 ]; then
        say "$group: nothing to measure"
        return
    fi
    if [ "$n" -ge 9 ] && [ "$count" -gt 1 ]; then
        rounds=3
    fi
    say "measuring $group"
    for ((r = 0; r < rounds; r++)); do
        local cmdline=(hyperfine -N --ignore-failure --style basic
            --runs $(( (n + rounds - 1) / rounds )) --warmup "$warmup"
            --export-json "$results/$group+round$r.json")
        if [ -n "$prepare" ]; then
            cmdline+=(--prepare "$prepare")
        fi
        for ((k = 0; k < count; k++)); do
            i=$(( (k + r) % count ))
            cmdline+=(-n "${names[$i]}" "${words[$i]}")
        done
        "${cmdline[@]}" >&2
    done
}

# q WORD...: the words quoted for hyperfine's own word splitting.
q() { printf '%q ' "$@"; }

# rss GROUP NAME TOOL PREPARE -- CMD...: peak resident set size of one run (GNU time's %M:
# the largest of the process and its waited-for children), in KiB.
rss() {
    local group="$1" name="$2" tool="$3" prepare="$4"; shift 5
    [ -n "${works[$tool]:-}" ] || return 0
    [ -z "$prepare" ] || $prepare
    if /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>"$work/rss.err"; then
        printf '%s\t%s\t%s\n' "$group" "$name" "$(tail -1 "$work/rss")" >>"$results/rss.tsv"
    else
        say "rss of $name failed: $(tail -1 "$work/rss.err")"
    fi
}
printf 'group\tname\tkib\n' >"$results/rss.tsv"

# fetch: a fresh layout each run, and a re-pull into a layout that already holds the image.
src=$(source_ref "$main_shape")
bench fetch "$runs" 1 "$helpers/clean $work/fetch-ours $work/fetch-skopeo" \
    fetch-image fetch-image "$(q "$bin_dir/fetch-image" -q "$src" "oci:$work/fetch-ours:latest")" \
    "skopeo copy" "skopeo copy" "$(q skopeo copy -q --src-tls-verify=false "$src" "oci:$work/fetch-skopeo:latest")"
rss fetch fetch-image fetch-image "$helpers/clean $work/fetch-ours" -- \
    "$bin_dir/fetch-image" -q "$src" "oci:$work/fetch-ours:latest"
rss fetch "skopeo copy" "skopeo copy" "$helpers/clean $work/fetch-skopeo" -- \
    skopeo copy -q --src-tls-verify=false "$src" "oci:$work/fetch-skopeo:latest"
bench repull "$runs" 1 "" \
    fetch-image fetch-image "$(q "$bin_dir/fetch-image" -q "$src" "oci:$work/fetch-ours:latest")" \
    "skopeo copy" "skopeo copy" "$(q skopeo copy -q --src-tls-verify=false "$src" "oci:$work/fetch-skopeo:latest")"
rss repull fetch-image fetch-image "" -- "$bin_dir/fetch-image" -q "$src" "oci:$work/fetch-ours:latest"
rss repull "skopeo copy" "skopeo copy" "" -- \
    skopeo copy -q --src-tls-verify=false "$src" "oci:$work/fetch-skopeo:latest"
"$helpers/clean" "$work/fetch-ours" "$work/fetch-skopeo"

# unpack: the same layout to a tmpfs, for each image size.
for shape in "${scaling_shapes[@]}"; do
    n=$runs warmup=1
    case "$shape" in large|manyfiles) n=$slow_runs warmup=0 ;; esac
    dest="$tmpfs/unpack"
    # Read once, so that no command pays for reading the layers from disk.
    cat "$inputs/$shape"/blobs/sha256/* >/dev/null
    bench "unpack-$shape" "$n" "$warmup" "$helpers/clean $dest" \
        unpack-layers unpack-layers "$(q "$bin_dir/unpack-layers" -q --image "$inputs/$shape:latest" "$dest")" \
        "umoci unpack" "umoci unpack" "$(q umoci unpack --image "$inputs/$shape:latest" "$dest")" \
        "tar -xzf" "tar -xzf" "$(q "$helpers/tar-$shape" "$dest")"
    if [ "$shape" = "$main_shape" ]; then
        rss "unpack-$shape" unpack-layers unpack-layers "$helpers/clean $dest" -- \
            "$bin_dir/unpack-layers" -q --image "$inputs/$shape:latest" "$dest"
        rss "unpack-$shape" "umoci unpack" "umoci unpack" "$helpers/clean $dest" -- \
            umoci unpack --image "$inputs/$shape:latest" "$dest"
        rss "unpack-$shape" "tar -xzf" "tar -xzf" "$helpers/clean $dest" -- "$helpers/tar-$shape" "$dest"
    fi
    "$helpers/clean" "$dest"
done

# snapshot: a subvolume holding SIZE MiB of files, snapshotted or copied on the loop btrfs.
for mib in "${snapshot_sizes[@]}"; do
    source_vol="$btrfs_mnt/source-$mib" dest="$btrfs_mnt/copy"
    btrfs subvolume create "$source_vol" >/dev/null
    "$bin_dir/bench-image" tree "$source_vol" "$mib"
    sync
    bench "snapshot-${mib}MiB" "$start_runs" 1 "$helpers/clean $dest" \
        "btrfs-snap snapshot" btrfs-snap "$(q "$bin_dir/btrfs-snap" snapshot "$source_vol" "$dest")" \
        "btrfs subvolume snapshot" "btrfs subvolume snapshot" "$(q btrfs subvolume snapshot "$source_vol" "$dest")"
    n=$runs warmup=1
    [ "$mib" -ge 1024 ] && n=$slow_runs warmup=0
    bench "snapshot-${mib}MiB+copy" "$n" "$warmup" "$helpers/clean $dest" \
        "cp -a" "cp -a" "$(q cp -a "$source_vol" "$dest")" \
        "cp -a --reflink=always" "cp -a --reflink=always" "$(q cp -a --reflink=always "$source_vol" "$dest")"
    "$helpers/clean" "$dest" "$source_vol"
done

# start: start-to-exit of /bin/true in the busybox rootfs. The runtimes get the bundle
# (runc's default config), bwrap and unshare the rootfs.
bench start "$start_runs" 3 "" \
    "nsenter-run --bundle" "nsenter-run --bundle" "$(q "$bin_dir/nsenter-run" --bundle "$bundle")" \
    "nsenter-run --rootfs" "nsenter-run --rootfs" "$(q "$bin_dir/nsenter-run" --rootfs "$rootfs" -- /bin/true)" \
    "nsenter-run --rootfs --privileged" "nsenter-run --rootfs" \
    "$(q "$bin_dir/nsenter-run" --rootfs "$rootfs" --privileged -- /bin/true)" \
    "crun run" "crun run" "$(q crun run --bundle "$bundle" bench-crun)" \
    "runc run" "runc run" "$(q runc run --bundle "$bundle" bench-runc)" \
    bwrap bwrap "$(q bwrap --unshare-all --bind "$rootfs" / --proc /proc --dev /dev /bin/true)" \
    "unshare + chroot" "unshare + chroot" "$(q unshare --mount --uts --ipc --net --pid --fork --mount-proc="$rootfs/proc" chroot "$rootfs" /bin/true)"

# chain: registry to a container exiting, each side with its own tools, on the loop btrfs.
chain="$btrfs_mnt/chain"
mkdir -p "$chain/ours" "$chain/peers"
cat >"$helpers/chain-ours" <<EOF
#!/bin/sh
# fetch-image, unpack-layers --rootfs-only into a fresh subvolume, btrfs-snap, nsenter-run
set -eu
c=$(q "$chain/ours")
$(q "$bin_dir/fetch-image") -q $(q "$src") "oci:\$c/layout:latest" >/dev/null
$(q "$bin_dir/btrfs-snap") create "\$c/image" >/dev/null
$(q "$bin_dir/unpack-layers") -q --rootfs-only --image "\$c/layout:latest" "\$c/image"
$(q "$bin_dir/btrfs-snap") snapshot "\$c/image" "\$c/container" >/dev/null
$(q "$bin_dir/nsenter-run") --rootfs "\$c/container" -- /bin/true
EOF
cat >"$helpers/chain-peers" <<EOF
#!/bin/sh
# skopeo copy, umoci unpack into a fresh subvolume (no copy), btrfs subvolume snapshot,
# unshare + chroot
set -eu
c=$(q "$chain/peers")
skopeo copy -q --src-tls-verify=false $(q "$src") "oci:\$c/layout:latest"
btrfs subvolume create "\$c/image" >/dev/null
umoci unpack --image "\$c/layout:latest" "\$c/image/bundle"
btrfs subvolume snapshot "\$c/image" "\$c/container" >/dev/null
r="\$c/container/bundle/rootfs"
unshare --mount --uts --ipc --net --pid --fork --mount-proc="\$r/proc" chroot "\$r" /bin/true
EOF
chmod +x "$helpers/chain-ours" "$helpers/chain-peers"
chain_ok=1
for tool in fetch-image "unpack-layers --rootfs-only" btrfs-snap "nsenter-run --rootfs"; do
    [ -n "${works[$tool]:-}" ] || chain_ok=""
done
if [ -n "$chain_ok" ]; then
    works["the project's tools"]=1
else
    printf '%s\t%s\n' "the project's tools" \
        "needs fetch-image, unpack-layers --rootfs-only, btrfs-snap and nsenter-run" >>"$results/unavailable.tsv"
fi
works["skopeo, umoci, btrfs, unshare"]=1
chain_clean="$helpers/clean $chain/ours/container $chain/ours/image $chain/ours/layout $chain/peers/container $chain/peers/image $chain/peers/layout"
bench chain "$slow_runs" 0 "$chain_clean" \
    "the project's tools" "the project's tools" "$(q "$helpers/chain-ours")" \
    "skopeo, umoci, btrfs, unshare" "skopeo, umoci, btrfs, unshare" "$(q "$helpers/chain-peers")"
$chain_clean

# ---------------------------------------------------------------------------------------
# The machine and the versions, then the report.

version() { "$@" 2>&1 | head -1 | tr -d '\r'; }
{
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'mode\t%s\n' "$([ "$smoke" = 1 ] && echo smoke || echo full)"
    printf 'runs\t%s (slow measurements %s, starts and snapshots %s)\n' "$runs" "$slow_runs" "$start_runs"
    printf 'main shape\t%s\n' "$main_shape"
    printf 'cpu\t%s, %s cores\n' "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)"
    printf 'memory\t%s\n' "$(free -h | awk '/^Mem:/ {print $2}')"
    printf 'kernel\t%s\n' "$(uname -srm)"
    printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
    printf 'load average\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg) (at the end of the run)"
    printf 'commit\t%s\n' "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    printf 'rustc\t%s\n' "$(version rustc --version)"
    printf 'skopeo\t%s\n' "$(version skopeo --version)"
    printf 'umoci\t%s\n' "$(version umoci --version)"
    printf 'tar\t%s\n' "$(version tar --version)"
    printf 'btrfs-progs\t%s\n' "$(version btrfs --version)"
    printf 'crun\t%s\n' "$(version crun --version)"
    printf 'runc\t%s\n' "$(version runc --version)"
    printf 'bwrap\t%s\n' "$(version bwrap --version)"
    printf 'hyperfine\t%s\n' "$(version hyperfine --version)"
    printf 'registry\t%s\n' "$(version docker-registry --version)"
} >"$results/meta.tsv"

"$bin_dir/bench-report" "$results" "$out" --notes "$repo/tests/bench/notes.md"
say "report written to $out"
