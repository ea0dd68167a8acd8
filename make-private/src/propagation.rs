//! Changing a mount's propagation type: mount(2) with no source, no filesystem type
//! and one of MS_SHARED, MS_PRIVATE, MS_SLAVE or MS_UNBINDABLE in the flags.
//!
//! See mount(2) "Changing the propagation type of an existing mount" and
//! mount_namespaces(7) "Shared subtrees".

use nix::mount::MsFlags;

/// The mount(2) flags that make a mount private, and with `recursive` every mount
/// below it too (MS_REC), as `mount --make-rprivate` does.
pub fn propagation_flags(recursive: bool) -> MsFlags {
    if recursive {
        MsFlags::MS_REC | MsFlags::MS_PRIVATE
    } else {
        MsFlags::MS_PRIVATE
    }
}

/// The flags as C source would spell them, for `--explain`.
pub fn flag_names(flags: MsFlags) -> &'static str {
    if flags.contains(MsFlags::MS_REC) {
        "MS_REC|MS_PRIVATE"
    } else {
        "MS_PRIVATE"
    }
}

/// The util-linux command with the same effect, for `--explain`.
pub fn classic_command(recursive: bool) -> &'static str {
    if recursive {
        "mount --make-rprivate"
    } else {
        "mount --make-private"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_adds_ms_rec_only() {
        assert_eq!(
            propagation_flags(true),
            MsFlags::MS_REC | MsFlags::MS_PRIVATE
        );
        assert_eq!(propagation_flags(false), MsFlags::MS_PRIVATE);
        assert_eq!(flag_names(propagation_flags(true)), "MS_REC|MS_PRIVATE");
        assert_eq!(flag_names(propagation_flags(false)), "MS_PRIVATE");
        assert_eq!(classic_command(true), "mount --make-rprivate");
    }
}
