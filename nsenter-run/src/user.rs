//! Who the command runs as, looked up in the rootfs' own `/etc/passwd` and
//! `/etc/group`, never through the host's NSS (CVE-2019-14271: `docker cp`
//! loaded the container's libnss into a host process).
//!
//! The files are read after `pivot_root`, so a hostile `/etc/passwd` symlink can
//! only point at another file of the container.

/// What `--user` (or a bundle's `process.user`) asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSpec {
    /// A uid or a name, and optionally a gid or a group name.
    Named { user: String, group: Option<String> },
    /// Exact ids from a bundle (`process.user`), with extra groups.
    Ids {
        uid: u32,
        gid: u32,
        additional_gids: Vec<u32>,
    },
}

impl UserSpec {
    /// `UID`, `UID:GID`, `NAME`, `NAME:GROUP`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        if user.is_empty() || group == Some("") {
            return Err(format!("'{spec}' is not UID[:GID] or NAME[:GROUP]"));
        }
        Ok(UserSpec::Named {
            user: user.to_string(),
            group: group.map(str::to_string),
        })
    }

    /// root, with its groups from the rootfs' `/etc/group` (as docker does).
    pub fn root() -> Self {
        UserSpec::Named {
            user: "0".to_string(),
            group: None,
        }
    }
}

/// The resolved credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's groups in `/etc/group`, or the bundle's.
    pub groups: Vec<u32>,
    /// From `/etc/passwd`, for `HOME` when the environment has none.
    pub home: String,
}

/// One line of `/etc/passwd`: `name:x:uid:gid:gecos:home:shell`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One line of `/etc/group`: `name:x:gid:member,member`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The well-formed lines of a passwd file; others are skipped like libc does.
pub fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 || fields[0].starts_with('#') {
                return None;
            }
            Some(Passwd {
                name: fields[0].to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                home: fields[5].to_string(),
            })
        })
        .collect()
}

/// The well-formed lines of a group file.
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0].starts_with('#') {
                return None;
            }
            Some(Group {
                name: fields[0].to_string(),
                gid: fields[2].parse().ok()?,
                members: fields[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Resolve a spec against the container's passwd and group entries, as runc's
/// `user.GetExecUser` does: a numeric uid need not exist in passwd (its gid is
/// then 0 and HOME `/`), a name must.
pub fn resolve(spec: &UserSpec, passwd: &[Passwd], groups: &[Group]) -> Result<Identity, String> {
    match spec {
        UserSpec::Ids {
            uid,
            gid,
            additional_gids,
        } => {
            let home = passwd
                .iter()
                .find(|p| p.uid == *uid)
                .map_or("/", |p| &p.home);
            Ok(Identity {
                uid: *uid,
                gid: *gid,
                groups: additional_gids.clone(),
                home: home.to_string(),
            })
        }
        UserSpec::Named { user, group } => {
            let entry = match user.parse::<u32>() {
                Ok(uid) => passwd
                    .iter()
                    .find(|p| p.uid == uid)
                    .cloned()
                    .unwrap_or(Passwd {
                        name: String::new(),
                        uid,
                        gid: 0,
                        home: "/".to_string(),
                    }),
                Err(_) => passwd
                    .iter()
                    .find(|p| p.name == *user)
                    .cloned()
                    .ok_or_else(|| format!("no user '{user}' in the rootfs' /etc/passwd"))?,
            };
            let gid = match group {
                None => entry.gid,
                Some(g) => match g.parse::<u32>() {
                    Ok(gid) => gid,
                    Err(_) => groups
                        .iter()
                        .find(|gr| gr.name == *g)
                        .map(|gr| gr.gid)
                        .ok_or_else(|| format!("no group '{g}' in the rootfs' /etc/group"))?,
                },
            };
            // With an explicit group only that group counts, as in runc.
            let mut supplementary: Vec<u32> = if group.is_some() || entry.name.is_empty() {
                Vec::new()
            } else {
                groups
                    .iter()
                    .filter(|gr| gr.members.contains(&entry.name))
                    .map(|gr| gr.gid)
                    .collect()
            };
            supplementary.retain(|g| *g != gid);
            supplementary.insert(0, gid);
            Ok(Identity {
                uid: entry.uid,
                gid,
                groups: supplementary,
                home: entry.home,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\n\
        daemon:x:1:1:daemon:/usr/sbin:/bin/false\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1000:\nstaff:x:50:alice\n";

    #[test]
    fn specs_parse() {
        assert_eq!(
            UserSpec::parse("1000:50").unwrap(),
            UserSpec::Named {
                user: "1000".into(),
                group: Some("50".into())
            }
        );
        assert!(UserSpec::parse("").is_err());
        assert!(UserSpec::parse("alice:").is_err());
        assert!(UserSpec::parse(":10").is_err());
    }

    #[test]
    fn names_come_from_the_rootfs_files() {
        let (p, g) = (parse_passwd(PASSWD), parse_group(GROUP));
        assert_eq!(p.len(), 3);
        let id = resolve(&UserSpec::parse("alice").unwrap(), &p, &g).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.home.as_str()),
            (1000, 1000, "/home/alice")
        );
        assert_eq!(id.groups, vec![1000, 10, 50]);
    }

    #[test]
    fn numeric_ids_need_no_entry() {
        let id = resolve(&UserSpec::parse("4242").unwrap(), &[], &[]).unwrap();
        assert_eq!((id.uid, id.gid, id.home.as_str()), (4242, 0, "/"));
        let id = resolve(
            &UserSpec::parse("1000:staff").unwrap(),
            &parse_passwd(PASSWD),
            &parse_group(GROUP),
        )
        .unwrap();
        assert_eq!((id.uid, id.gid, id.groups.clone()), (1000, 50, vec![50]));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let err = resolve(
            &UserSpec::parse("mallory").unwrap(),
            &parse_passwd(PASSWD),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("'mallory'"), "{err}");
        let err = resolve(
            &UserSpec::parse("alice:nogroup").unwrap(),
            &parse_passwd(PASSWD),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("'nogroup'"), "{err}");
    }

    #[test]
    fn bundle_ids_are_taken_as_given() {
        let spec = UserSpec::Ids {
            uid: 1000,
            gid: 5,
            additional_gids: vec![7],
        };
        let id = resolve(&spec, &parse_passwd(PASSWD), &[]).unwrap();
        assert_eq!(
            (id.uid, id.gid, id.groups.clone(), id.home.as_str()),
            (1000, 5, vec![7], "/home/alice")
        );
    }
}
