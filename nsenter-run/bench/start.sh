#!/usr/bin/env bash
# Start-to-exit of /bin/true in a busybox rootfs: nsenter-run against crun, bwrap and runc,
# with `unshare ... chroot` beside them, in one hyperfine run. Prints the ratios.
#
#   sudo nsenter-run/bench/start.sh [NSENTER_RUN_BINARY] [RUNS]
#
# Needs root, hyperfine, busybox, runc, crun, bwrap, python3. crun refuses a hybrid cgroup
# layout (v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified): the whole run
# happens in a private mount namespace where that mount is gone, which changes nothing
# for the others.
set -euo pipefail

bin=${1:-$(dirname "$0")/../../target/release/nsenter-run}
runs=${2:-200}
if [ ! -x "$bin" ]; then
    echo "start.sh: no nsenter-run binary at $bin (cargo build --release -p nsenter-run, or pass its path)" >&2
    exit 1
fi
bin=$(realpath "$bin")
for tool in hyperfine busybox runc crun bwrap python3 unshare; do
    command -v "$tool" >/dev/null || { echo "start.sh: $tool is missing (tests/scripts/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bundle=$work/bundle
rootfs=$bundle/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(busybox --list); do
    if [ "$applet" != busybox ]; then ln -s busybox "$rootfs/bin/$applet"; fi
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" <<'PY'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["/bin/true"]
json.dump(config, open(path, "w"), indent=1)
PY

id=bench-$$
unshare --mount --propagation private -- sh -c '
    if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi
    exec "$@"' sh \
    hyperfine -N --style basic --warmup 10 --runs "$runs" --export-json "$work/results.json" \
    -n nsenter-run "$bin --rootfs $rootfs -- /bin/true" \
    -n "crun run" "crun run -b $bundle $id-crun" \
    -n bwrap "bwrap --unshare-all --bind $rootfs / --proc /proc --dev /dev /bin/true" \
    -n "runc run" "runc run -b $bundle $id-runc" \
    -n "unshare+chroot" "unshare --mount --uts --ipc --net --pid --fork chroot $rootfs /bin/true" >&2

python3 - "$work/results.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ours = results["nsenter-run"]
print(f"{'':16}{'mean ms':>9}{'median ms':>11}{'user+sys ms':>13}")
for name, r in results.items():
    cpu = (r["user"] + r["system"]) * 1000
    print(f"{name:16}{r['mean'] * 1000:9.2f}{r['median'] * 1000:11.2f}{cpu:13.2f}")
print()
for peer in ("crun run", "bwrap", "runc run", "unshare+chroot"):
    p = results[peer]
    print(f"nsenter-run / {peer:15} mean {ours['mean'] / p['mean']:.2f}x   median {ours['median'] / p['median']:.2f}x")
PY
