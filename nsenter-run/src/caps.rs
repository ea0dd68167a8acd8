//! Capabilities: the root of a container is not the root of the host.
//!
//! capabilities(7) splits root's power into ~41 bits. A container keeps Docker's
//! default 14 (moby `oci/caps/defaults.go`) and loses the rest from every set:
//! the bounding set (what any later execve can ever regain, cut with
//! `prctl(PR_CAPBSET_DROP)`), effective, permitted and inheritable (`capset(2)`),
//! and ambient (`prctl(PR_CAP_AMBIENT)`). Inheritable stays empty as in Docker
//! since CVE-2022-24769. Like: `capsh --drop=... --caps=... --`.

use nix::errno::Errno;

use crate::explain::Explain;
use crate::Error;

/// Capability names in kernel order (`include/uapi/linux/capability.h`): the
/// index is the bit number.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default set (moby `oci/caps/defaults.go`); `CapBnd: 00000000a80425fb`.
pub const DOCKER_DEFAULT: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// A set of capabilities as the kernel's 64-bit mask.
pub type CapMask = u64;

/// The mask of a list of names (`CAP_CHOWN` or `chown`, any case).
pub fn mask_of<S: AsRef<str>>(names: &[S]) -> Result<CapMask, String> {
    let mut mask = 0;
    for name in names {
        let name = name.as_ref();
        mask |= 1u64 << bit_of(name).ok_or_else(|| format!("unknown capability '{name}'"))?;
    }
    Ok(mask)
}

/// The bit number of one capability name.
pub fn bit_of(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().position(|n| *n == full).map(|i| i as u32)
}

/// `cap_chown,cap_kill` for explain lines (capsh's spelling).
pub fn names_of(mask: CapMask) -> String {
    let names: Vec<String> = (0..64)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| match NAMES.get(bit) {
            Some(name) => name.to_ascii_lowercase(),
            None => format!("{bit}"),
        })
        .collect();
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(",")
    }
}

/// The five sets a process ends up with (capabilities(7)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapMask,
    pub effective: CapMask,
    pub permitted: CapMask,
    pub inheritable: CapMask,
    pub ambient: CapMask,
}

impl CapSets {
    /// What Docker gives a container: the default set in bounding, effective and
    /// permitted; inheritable and ambient empty (CVE-2022-24769).
    pub fn docker_default() -> Self {
        let set = mask_of(&DOCKER_DEFAULT).unwrap_or(0);
        CapSets {
            bounding: set,
            effective: set,
            permitted: set,
            inheritable: 0,
            ambient: 0,
        }
    }

    /// `--privileged`: every capability nsenter-run itself holds (`all`).
    pub fn all(all: CapMask) -> Self {
        CapSets {
            bounding: all,
            effective: all,
            permitted: all,
            inheritable: 0,
            ambient: 0,
        }
    }

    /// The sets a non-root user starts with: the kernel clears permitted and
    /// effective on setuid to a non-zero uid, Docker keeps them empty too.
    pub fn for_non_root(self) -> Self {
        CapSets {
            effective: 0,
            permitted: 0,
            ambient: 0,
            ..self
        }
    }
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Every capability this kernel knows.
pub fn every(last_cap: u32) -> CapMask {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// This process' permitted set (capget(2)); every known one if that fails.
pub fn current_permitted() -> CapMask {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(), CapData::default()];
    // SAFETY: v3 header and two data structs that the kernel fills.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) };
    if rc != 0 {
        return every(last_cap());
    }
    u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32)
}

/// Cut the bounding set to `keep` (needs CAP_SETPCAP, so before any capset).
pub fn drop_bounding(keep: CapMask, last_cap: u32, explain: Explain) -> Result<(), Error> {
    let dropped: CapMask = (0..=last_cap.min(63))
        .map(|bit| 1u64 << bit)
        .filter(|bit| keep & bit == 0)
        .fold(0, |acc, bit| acc | bit);
    if dropped == 0 {
        return Ok(());
    }
    explain.call(
        format!(
            "prctl(PR_CAPBSET_DROP, ...) for {} capabilities",
            dropped.count_ones()
        ),
        format!("capsh --drop={}", names_of(dropped)),
    );
    for bit in 0..=last_cap.min(63) {
        if dropped & (1u64 << bit) != 0 {
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, bit as libc::c_ulong, 0, 0, 0) };
            Errno::result(rc)
                .map_err(|e| Error::sys(format!("prctl(PR_CAPBSET_DROP, {bit})"), e))?;
        }
    }
    Ok(())
}

/// Set effective, permitted and inheritable with capset(2), then the ambient
/// set (cleared, then raised bit by bit; each must be permitted and inheritable).
pub fn apply(sets: &CapSets, explain: Explain) -> Result<(), Error> {
    explain.call(
        format!(
            "capset(effective={:#x}, permitted={:#x}, inheritable={:#x})",
            sets.effective, sets.permitted, sets.inheritable
        ),
        format!("capsh --caps={}+ep", names_of(sets.permitted)),
    );
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let split = |mask: CapMask| (mask as u32, (mask >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and data are the v3 layout of capset(2): one header and an
    // array of two data structs, both alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    Errno::result(rc).map_err(|e| Error::sys("capset", e))?;

    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    Errno::result(rc).map_err(|e| Error::sys("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", e))?;
    // capabilities(7): an ambient capability must also be permitted and
    // inheritable; runc skips the others, and so does this.
    let ambient = sets.ambient & sets.permitted & sets.inheritable;
    if ambient != sets.ambient {
        explain.note(format!(
            "ambient capabilities not also permitted and inheritable are skipped: {}",
            names_of(sets.ambient & !ambient)
        ));
    }
    for bit in 0..64u32 {
        if ambient & (1u64 << bit) != 0 {
            explain.call(
                format!("prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, {bit})"),
                format!("capsh --addamb={}", names_of(1u64 << bit)),
            );
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    bit as libc::c_ulong,
                    0,
                    0,
                )
            };
            Errno::result(rc)
                .map_err(|e| Error::sys(format!("prctl(PR_CAP_AMBIENT_RAISE, {bit})"), e))?;
        }
    }
    Ok(())
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_is_the_mask_docker_shows() {
        assert_eq!(CapSets::docker_default().bounding, 0xa804_25fb);
        assert_eq!(CapSets::docker_default().inheritable, 0);
    }

    #[test]
    fn names_parse_either_spelling() {
        assert_eq!(bit_of("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(bit_of("sys_admin"), Some(21));
        assert_eq!(bit_of("cap_checkpoint_restore"), Some(40));
        assert_eq!(bit_of("CAP_NOPE"), None);
        assert!(mask_of(&["CAP_NOPE"]).unwrap_err().contains("CAP_NOPE"));
    }

    #[test]
    fn all_covers_up_to_the_last_cap() {
        assert_eq!(every(40), (1u64 << 41) - 1);
        assert_eq!(every(63), u64::MAX);
        assert_eq!(CapSets::all(0b101).permitted, 0b101);
    }

    #[test]
    fn names_for_explain() {
        assert_eq!(names_of(0b11), "cap_chown,cap_dac_override");
        assert_eq!(names_of(0), "(none)");
    }

    #[test]
    fn non_root_keeps_only_the_bounding_set() {
        let sets = CapSets::docker_default().for_non_root();
        assert_eq!(sets.bounding, 0xa804_25fb);
        assert_eq!(sets.effective | sets.permitted | sets.ambient, 0);
    }
}
