#!/usr/bin/env bash
# demo.sh: the classic "container without Docker" demo, one small tool per kernel
# or format mechanism. Each step prints the classic command it mirrors, then runs
# the project's tool for it:
#
#   mount --make-rprivate /                          make-private /
#   skopeo copy docker://IMAGE oci:oci-images/NAME   fetch-image ...
#   umoci unpack --image oci-images/NAME ...         unpack-layers ...
#   btrfs subvolume create images/NAME               btrfs-snap create ...
#   btrfs subvolume snapshot images/NAME containers/tutorial
#   unshare ... ; pivot_root ...                     nsenter-run ...
#
# Usage: sudo ./demo.sh [--offline] [--workdir DIR] [--fetch fetch-image|skopeo]
#                       [--unpack unpack-layers|umoci] [--explain] [IMAGE] [-- COMMAND...]
#   IMAGE            what to run (default docker://alpine:latest)
#   --offline        serve the project's own busybox image from a registry on
#                    127.0.0.1 (Debian's docker-registry) and run that: no internet
#   --workdir DIR    where images and containers live (default ./demo-work); when DIR
#                    is not on btrfs, a btrfs in a sparse loop file DIR/btrfs.img
#   --fetch TOOL     fetch-image (default) or skopeo
#   --unpack TOOL    unpack-layers (default) or umoci
#   --explain        every tool prints each system call or request it makes
#   -- COMMAND...    run COMMAND in the container and exit with its status;
#                    without it, an interactive /bin/sh
#
# The tools are built (cargo build --release) into $CARGO_TARGET_DIR, or ./target,
# when they are missing or older than their sources. The whole script runs in a
# mount namespace of its own, so nothing it mounts outlives it; everything it
# started or mounted is undone on exit, on success, failure or Ctrl-C.
set -euo pipefail

usage() { # STATUS: --help prints the Usage block of the header above; a usage error, how to get it
    if [ "$1" -eq 0 ]; then
        sed -n 's/^# \{0,1\}//; /^Usage:/,/^$/p' "${BASH_SOURCE[0]}"
    else
        printf 'Try: %s --help\n' "$0" >&2
    fi
    exit "$1"
}
say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# ---- command line --------------------------------------------------------------
args=("$@")
offline=false
workdir=./demo-work
fetch=fetch-image
unpack=unpack-layers
explain=()
image=
command=()
while [ $# -gt 0 ]; do
    case $1 in
        --offline) offline=true ;;
        --workdir) [ $# -ge 2 ] || { say "--workdir needs a directory"; usage 2; }; workdir=$2; shift ;;
        --workdir=*) workdir=${1#*=} ;;
        --fetch) [ $# -ge 2 ] || { say "--fetch needs fetch-image or skopeo"; usage 2; }; fetch=$2; shift ;;
        --fetch=*) fetch=${1#*=} ;;
        --unpack) [ $# -ge 2 ] || { say "--unpack needs unpack-layers or umoci"; usage 2; }; unpack=$2; shift ;;
        --unpack=*) unpack=${1#*=} ;;
        --explain) explain=(--explain) ;;
        -h | --help) usage 0 ;;
        --) shift; command=("$@"); break ;;
        -*) say "unknown option '$1'"; usage 2 ;;
        *) [ -z "$image" ] || { say "only one IMAGE, got '$image' and '$1'"; usage 2; }
           image=$1 ;;
    esac
    shift
done
case $fetch in fetch-image | skopeo) ;; *) say "--fetch takes fetch-image or skopeo, not '$fetch'"; usage 2 ;; esac
case $unpack in unpack-layers | umoci) ;; *) say "--unpack takes unpack-layers or umoci, not '$unpack'"; usage 2 ;; esac
if $offline && [ -n "$image" ]; then
    say "--offline runs the project's own busybox image: leave out IMAGE ('$image')"
    usage 2
fi
[ -n "$workdir" ] || usage 2

if [ "$(id -u)" -ne 0 ]; then
    die "needs root: it mounts a btrfs, makes subvolumes and namespaces. Run: sudo $0 ${args[*]}"
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
case $target in /*) ;; *) target=$PWD/$target ;; esac

mkdir -p "$workdir"
# findmnt names the filesystem as the mount table does (ext4, tmpfs); stat -f
# only knows the superblock magic, which ext2, ext3 and ext4 share.
fstype=$(findmnt --noheadings --output FSTYPE --target "$workdir")
loop=false
[ "$fstype" = btrfs ] || loop=true

# ---- system packages -------------------------------------------------------------
missing=()
why=()
need() { # COMMAND PACKAGE WHY
    if ! command -v "$1" >/dev/null; then
        missing+=("$2")
        why+=("$2 ($1: $3)")
    fi
}
need unshare util-linux "the mount namespace this script runs in"
$loop && need mkfs.btrfs btrfs-progs "$workdir is on $fstype, so the demo makes a btrfs in a loop file"
$offline && need docker-registry docker-registry "the local registry --offline serves the image from"
$offline && need busybox busybox-static "the static busybox the --offline image is built from"
$offline && need ss iproute2 "to read which port the kernel gave the registry"
[ "$fetch" = skopeo ] && need skopeo skopeo "--fetch skopeo"
[ "$unpack" = umoci ] && need umoci umoci "--unpack umoci"
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing, install them with your package manager: ${why[*]}"
    say "installing ${why[*]}"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# ---- the tools -----------------------------------------------------------------
tools=(make-private fetch-image unpack-layers btrfs-snap nsenter-run)
$offline && tools+=(image-builder)
stale=
for tool in "${tools[@]}"; do
    crate=$tool
    [ "$tool" = image-builder ] && crate=tests
    if [ ! -x "$target/release/$tool" ]; then
        stale="$target/release/$tool is missing"
        break
    fi
    # (The tests crate's other binaries do not count: cargo would not relink image-builder for them.)
    newer=$(find "$repo/$crate/src" "$repo/$crate/Cargo.toml" -path "$repo/tests/src/bin/*" ! -name image-builder.rs -prune \
        -o -type f -newer "$target/release/$tool" -print -quit)
    if [ -n "$newer" ]; then
        stale="${newer#"$repo"/} is newer than $tool"
        break
    fi
done
if [ -n "$stale" ]; then
    # sudo resets PATH: look for rustup's cargo in the home of whoever ran sudo too.
    invoker=${SUDO_USER:-root}
    home=$(getent passwd "$invoker" | cut -d: -f6)
    cargo=$(command -v cargo) || cargo=$home/.cargo/bin/cargo
    [ -x "$cargo" ] || die "cargo is needed to build the tools ($stale): install Rust from https://rustup.rs and run again"
    say "building the tools, $stale:"
    build=("$cargo" build --release --workspace --manifest-path "$repo/Cargo.toml" --target-dir "$target")
    for tool in "${tools[@]}"; do build+=(--bin "$tool"); done
    # Build as the user who ran sudo when the checkout is theirs: their toolchain,
    # and no root-owned files left in their target/. From the checkout, so that cargo
    # reads its .cargo/config.toml (nsenter-run is linked statically).
    (
        cd "$repo"
        if [ "$invoker" != root ] && [ "$(stat --format=%U "$repo")" = "$invoker" ]; then
            sudo -u "$invoker" -H -- "${build[@]}"
        else
            "${build[@]}"
        fi
    )
fi

# ---- a mount namespace of our own ------------------------------------------------
# Everything below runs in a mount namespace of our own: the loop mount and the
# propagation change of step 1 never reach the host's mount table, and vanish
# with the namespace even if this script is killed with SIGKILL. The namespace
# starts with the host's propagation (shared, on systemd machines), which is
# exactly what step 1, make-private, exists to cut.
if [ "${DEMO_IN_OWN_MOUNT_NAMESPACE:-}" != yes ]; then
    export DEMO_IN_OWN_MOUNT_NAMESPACE=yes
    exec unshare --mount --propagation unchanged -- "$BASH" "${BASH_SOURCE[0]}" "${args[@]}"
fi

cd "$workdir"
# One demo at a time per workdir: they share the loop file and the subvolumes.
exec 9>.demo.lock
flock --nonblock 9 || die "another demo.sh is running in $workdir"
PATH=$target/release:$PATH

# ---- undo everything on exit -----------------------------------------------------
registry_pid=
mounted=false
cleanup() {
    # Undo in reverse order; keep going if one undo fails, and let each failure
    # speak for itself. The script's exit status is left as it was.
    set +e
    if [ -n "$registry_pid" ]; then
        say "stopping the registry (pid $registry_pid)"
        kill "$registry_pid"
        wait "$registry_pid"
        rm -rf "$workdir_abs/registry"
    fi
    if $mounted; then
        say "unmounting the loop btrfs ($workdir/btrfs)"
        cd "$workdir_abs"
        umount btrfs
    fi
}
workdir_abs=$PWD
trap cleanup EXIT

# Each step prints the classic command it mirrors as a comment, then the tool's
# command line, then runs the tool with its stdout on stderr: the script's own
# stdout is the container's.
bold= plain=
if [ -t 2 ]; then bold=$'\e[1m' plain=$'\e[0m'; fi
show() { # ARGS...: the words as a shell would need them typed
    local arg out=
    for arg in "$@"; do
        if [[ $arg =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=" $arg"; else out+=" ${arg@Q}"; fi
    done
    printf '%s' "${out# }"
}
announce() { # CLASSIC TOOL ARGS...: the classic command as a comment, then the tool
    local classic=$1 tool
    shift
    tool=$(show "$@")
    if [ "$tool" = "$classic" ]; then
        printf '\n%s\n' "$tool" >&2
    else
        printf '\n%s# %s%s\n%s\n' "$bold" "$classic" "$plain" "$tool" >&2
    fi
}
step() { # CLASSIC TOOL ARGS...
    announce "$@"
    shift
    "$@" >&2
}
setup() { # COMMAND ARGS...: a set-up command, shown as typed
    printf '  $ %s\n' "$(show "$@")" >&2
    "$@" >&2
}

# ---- a btrfs to work on ------------------------------------------------------------
root=$workdir_abs
if $loop; then
    say "$workdir is on $fstype, not btrfs: the demo makes a btrfs in a sparse loop file there"
    if [ ! -e btrfs.img ]; then
        # Made under a temporary name, so a half-made file is never mistaken for a filesystem.
        setup truncate --size=8G btrfs.img.new
        setup mkfs.btrfs --quiet btrfs.img.new
        setup mv btrfs.img.new btrfs.img
    fi
    mkdir -p btrfs
    # mount -o loop sets the loop device to detach itself when unmounted (autoclear).
    setup mount -o loop btrfs.img btrfs
    mounted=true
    root=$workdir_abs/btrfs
fi

# ---- --offline: a registry on loopback, seeded with the project's busybox image ----
if $offline; then
    say "--offline: a local registry on 127.0.0.1, seeded with a busybox image built here"
    rm -rf registry
    mkdir registry
    cat >registry/config.yml <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $workdir_abs/registry/storage
http:
  addr: 127.0.0.1:0
  secret: only-served-on-loopback
EOF
    # Port 0: the kernel picks a free port, read back below. --pdeathsig: the
    # registry dies with this script, even if the script is killed with SIGKILL.
    printf '  $ docker-registry serve registry/config.yml &\n' >&2
    setpriv --pdeathsig TERM -- docker-registry serve registry/config.yml </dev/null >registry/log 2>&1 9>&- &
    registry_pid=$!
    port=
    for _ in $(seq 100); do
        port=$(ss -Hltnp | sed -n "s/.* 127\.0\.0\.1:\([0-9]*\) .*pid=$registry_pid,.*/\1/p")
        [ -z "$port" ] || break
        read -r _ _ state _ <"/proc/$registry_pid/stat"
        [ "$state" != Z ] || die "the registry failed to start: $(cat registry/log)"
        sleep 0.1
    done
    [ -n "$port" ] || die "the registry did not listen within 10 seconds: $(cat registry/log)"
    say "registry listening on 127.0.0.1:$port"
    setup image-builder busybox --push "127.0.0.1:$port/busybox:latest"
    image=docker://127.0.0.1:$port/busybox:latest
fi
image=${image:-docker://alpine:latest}
case $image in *://*) ;; *) image=docker://$image ;; esac # skopeo wants the transport spelled out

# NAME and TAG from the reference: docker://[HOST[:PORT]/]PATH/NAME[:TAG][@DIGEST]
ref=${image#docker://}
name=${ref##*/}
name=${name%%@*}
tag=latest
case $name in *:*) tag=${name#*:} name=${name%%:*} ;; esac
[[ $name =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "cannot take an image name from '$image'"
[[ $tag =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]] || die "cannot take a tag from '$image'"
container=tutorial

# ---- the demo ------------------------------------------------------------------------
cd "$root"
say "images and containers in $root"

step "mount --make-rprivate /" \
    make-private "${explain[@]}" /

step "mkdir -p images containers oci-images unpacked-images" \
    mkdir -p images containers oci-images unpacked-images

# The fetch: an OCI image layout in oci-images/NAME. Blobs already there are reused.
tls=()
$offline && tls=(--src-tls-verify=false) # skopeo wants http allowed by name, even on loopback
case $fetch in
    fetch-image) fetch_with=(fetch-image "${explain[@]}") ;;
    skopeo) fetch_with=(skopeo copy "${tls[@]}") ;;
esac
hint=
$offline || hint="; with no internet, --offline runs the demo against a local registry"
step "skopeo copy ${tls[*]}${tls:+ }$image oci:oci-images/$name:$tag" \
    "${fetch_with[@]}" "$image" "oci:oci-images/$name:$tag" || die "cannot fetch $image$hint"

# The unpack: an OCI runtime bundle (config.json + rootfs/) in unpacked-images/NAME.
if [ -e "unpacked-images/$name" ]; then
    step "rm -rf unpacked-images/$name" rm -rf "unpacked-images/$name"
fi
case $unpack in
    unpack-layers)
        step "umoci unpack --image oci-images/$name:$tag unpacked-images/$name" \
            unpack-layers "${explain[@]}" --image "oci-images/$name:$tag" "unpacked-images/$name" ;;
    umoci)
        step "umoci unpack --image oci-images/$name:$tag unpacked-images/$name" \
            umoci unpack --image "oci-images/$name:$tag" "unpacked-images/$name" ;;
esac

# The image's filesystem in a subvolume, and the container a snapshot of it.
if [ -e "images/$name" ]; then
    step "btrfs subvolume delete images/$name" \
        btrfs-snap "${explain[@]}" delete "images/$name"
fi
step "btrfs subvolume create images/$name" \
    btrfs-snap "${explain[@]}" create "images/$name"

step "cp -a unpacked-images/$name/rootfs/. images/$name/" \
    cp -a "unpacked-images/$name/rootfs/." "images/$name/"

if [ -e "containers/$container" ]; then
    step "btrfs subvolume delete containers/$container" \
        btrfs-snap "${explain[@]}" delete "containers/$container"
fi
step "btrfs subvolume snapshot images/$name containers/$container" \
    btrfs-snap "${explain[@]}" snapshot "images/$name" "containers/$container"

# The launch: new namespaces, pivot_root into the snapshot, COMMAND as PID 1.
# Run last and as is: its stdout is the container's, its exit status the script's.
shell=("${command[@]}")
[ ${#shell[@]} -gt 0 ] || shell=(/bin/sh)
c=containers/$container
classic=(unshare --mount --uts --ipc --net --pid --fork -- sh -c "mount --bind $c $c && cd $c && mkdir -p oldroot && pivot_root . oldroot && umount -l /oldroot && mount -t proc proc /proc && hostname $container && exec \"\$@\"" sh "${shell[@]}")
announce "$(show "${classic[@]}")" \
    nsenter-run "${explain[@]}" --rootfs "$c" --hostname "$container" -- "${shell[@]}"
[ ${#command[@]} -gt 0 ] || say "a shell in the container: 'exit' leaves it, and the demo undoes its set-up"
nsenter-run "${explain[@]}" --rootfs "$c" --hostname "$container" -- "${shell[@]}"
