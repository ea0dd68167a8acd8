//! The image's `User` (`name`, `uid`, `name:group`, `uid:gid`) turned into
//! numbers with the rootfs' own `/etc/passwd` and `/etc/group` (passwd(5),
//! group(5)) and never the host's NSS: looking names up on the host would
//! give the host's ids, and loading the host's NSS modules after reading
//! container files is how CVE-2019-14271 happened. The rules follow runc's
//! libcontainer `GetExecUser`, which umoci uses too.

/// The process identity for `config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Groups listing the user as a member (only when no group was given).
    pub additional_gids: Vec<u32>,
    /// The user's home directory from passwd, for a default `HOME`
    /// (none when passwd has no entry, as umoci).
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("no user '{0}' in the image's /etc/passwd")]
    NoUser(String),
    #[error("no group '{0}' in the image's /etc/group")]
    NoGroup(String),
}

struct PasswdLine<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_lines(text: &str) -> impl Iterator<Item = PasswdLine<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
        if f.len() < 7 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some(PasswdLine {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

struct GroupLine<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

fn group_lines(text: &str) -> impl Iterator<Item = GroupLine<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim_end_matches('\r').split(':').collect();
        if f.len() < 4 || f[0].is_empty() || f[0].starts_with('#') {
            return None;
        }
        Some(GroupLine {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3],
        })
    })
}

/// Resolves `spec` (the image config's `User`; empty means root) against the
/// rootfs' passwd and group files (empty text when the file is missing).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd_lines(passwd).find(|p| match numeric_uid {
        Some(uid) => p.uid == uid,
        None => p.name == user_part,
    });
    let (uid, mut gid, home, name) = match (&entry, numeric_uid) {
        (Some(p), _) => (p.uid, p.gid, Some(p.home.to_owned()), Some(p.name)),
        // A numeric uid need not exist in passwd: it is used as given.
        (None, Some(uid)) => (uid, 0, None, None),
        (None, None) => return Err(UserError::NoUser(user_part.to_owned())),
    };
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_lines(group)
                    .find(|l| l.name == g)
                    .map(|l| l.gid)
                    .ok_or_else(|| UserError::NoGroup(g.to_owned()))?,
            };
        }
        _ => {
            if let Some(name) = name {
                for line in group_lines(group) {
                    let member = line.members.split(',').any(|m| m.trim() == name);
                    if member && line.gid != gid && !additional_gids.contains(&line.gid) {
                        additional_gids.push(line.gid);
                    }
                }
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
        app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:app,daemon\naudio:x:29:app\napp:x:1000:\nstaff:x:50:\n";

    #[test]
    fn empty_means_root() {
        let u = resolve("", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_deref()), (0, 0, Some("/root")));
    }

    #[test]
    fn names_come_from_the_rootfs_files() {
        let u = resolve("app", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, [10, 29]);
        assert_eq!(u.home.as_deref(), Some("/home/app"));
    }

    #[test]
    fn explicit_group_by_name_or_number() {
        let u = resolve("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        let u = resolve("nobody:7", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (65534, 7));
    }

    #[test]
    fn numeric_uid_without_entry_is_kept() {
        let u = resolve("4242", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 0, None));
        let u = resolve("4242:4243", "", "").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4243));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve("ghost", PASSWD, GROUP),
            Err(UserError::NoUser("ghost".into()))
        );
        assert_eq!(
            resolve("app:ghosts", PASSWD, GROUP),
            Err(UserError::NoGroup("ghosts".into()))
        );
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let passwd = "garbage\n#comment:x:5:5::/:/bin/sh\nbad:x:notanumber:0::/:/bin/sh\nok:x:7:8::/ok:/bin/sh\n";
        assert_eq!(resolve("ok", passwd, "").unwrap().uid, 7);
        assert!(resolve("bad", passwd, "").is_err());
    }
}
