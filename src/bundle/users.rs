//! Resolution of an image's `Config.User` against the image's own
//! `/etc/passwd` and `/etc/group`, as the image-spec's conversion rules
//! ask (`conversion.md`, "Config.User").
//!
//! Everything here is a pure function over file *contents*: the caller reads
//! the files confined to the rootfs (an image's `/etc/passwd` may be a
//! symlink to anywhere) and says when a file is absent or unreadable.
//!
//! The result is what runc's `GetExecUser` (moby/sys/user) gives, which is
//! what Docker, umoci and podman run the image's process with: a file that
//! cannot be read counts as empty (only a *name* then fails), and the
//! supplementary groups are those listing the matched passwd entry's name,
//! whether the user was given by name, by uid or not at all (root).

/// Largest id accepted: ids are signed 32-bit on some systems, so anything
/// above `2^31 - 1` is refused rather than silently wrapped.
pub const MAX_ID: u32 = i32::MAX as u32;

/// The process identity a `Config.User` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// `process.user.uid`.
    pub uid: u32,
    /// `process.user.gid`.
    pub gid: u32,
    /// `process.user.additionalGids`: the gids of the groups listing the
    /// user's passwd name as a member, in `/etc/group` order without
    /// duplicates. Empty when a group was given or the uid has no passwd
    /// entry.
    pub additional_gids: Vec<u32>,
    /// The home directory from the user's `/etc/passwd` entry, if any.
    pub home: Option<String>,
}

/// One of the image's account files (`/etc/passwd`, `/etc/group`) as the
/// caller found it in the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountFile<'a> {
    /// Its contents.
    Read(&'a [u8]),
    /// The image has no such file.
    Absent,
    /// It is there but cannot be read as a file (a symlink to `/dev/null`,
    /// a directory, a loop, too large): like runc, treated as having no
    /// entries. The reason is kept for messages.
    Unreadable(&'a str),
}

impl<'a> AccountFile<'a> {
    fn contents(self) -> Option<&'a [u8]> {
        match self {
            AccountFile::Read(data) => Some(data),
            AccountFile::Absent | AccountFile::Unreadable(_) => None,
        }
    }

    fn state(self) -> FileState {
        match self {
            AccountFile::Read(_) => FileState::Read,
            AccountFile::Absent => FileState::Absent,
            AccountFile::Unreadable(reason) => FileState::Unreadable(reason.to_owned()),
        }
    }
}

/// What a lookup found of an account file, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Read, and the entry is not in it.
    Read,
    /// The image has no such file.
    Absent,
    /// The file could not be read, for this reason.
    Unreadable(String),
}

impl std::fmt::Display for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileState::Read => Ok(()),
            FileState::Absent => f.write_str(" (the image has no such file)"),
            FileState::Unreadable(reason) => write!(f, " (it cannot be read: {reason})"),
        }
    }
}

/// Why a `Config.User` could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user name with no entry in the image's `/etc/passwd`.
    #[error("user {name:?} not found in /etc/passwd in the image{passwd}")]
    UnknownUser {
        /// The name looked up.
        name: String,
        /// Whether the image's `/etc/passwd` was read, absent or unreadable.
        passwd: FileState,
    },
    /// A group name with no entry in the image's `/etc/group`.
    #[error("group {name:?} not found in /etc/group in the image{group}")]
    UnknownGroup {
        /// The name looked up.
        name: String,
        /// Whether the image's `/etc/group` was read, absent or unreadable.
        group: FileState,
    },
    /// A numeric id that is negative or above [`MAX_ID`].
    #[error("id {id:?} is out of range (0..={MAX_ID})")]
    IdOutOfRange {
        /// The id as written.
        id: String,
    },
    /// A user spec that is not `user[:group]`.
    #[error("malformed user {spec:?}: expected user, uid, user:group or uid:gid")]
    Malformed {
        /// The whole spec.
        spec: String,
    },
}

/// One half of a user spec: a number or a name.
#[derive(Debug, PartialEq, Eq)]
enum Id<'a> {
    Numeric(u32),
    Name(&'a str),
}

/// Parse one half of a spec. All-digit strings are ids (as in Docker and
/// runc, a user literally named "1000" cannot be selected by name); a
/// leading `-` before digits is a negative id, which is refused.
fn parse_id(s: &str) -> Result<Id<'_>, UserError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Id::Name(s));
    }
    let out_of_range = || UserError::IdOutOfRange { id: s.to_owned() };
    if digits.len() != s.len() {
        return Err(out_of_range());
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ID => Ok(Id::Numeric(n)),
        _ => Err(out_of_range()),
    }
}

/// A passwd field holding an id: only in-range decimal numbers count.
fn field_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| *n <= MAX_ID)
}

/// The non-empty, non-comment lines of a passwd/group file split on `:`.
/// Lines that are not UTF-8 are skipped: they cannot name a user we match.
fn records(contents: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    contents
        .split(|b| *b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

/// One well-formed `/etc/passwd` entry.
#[derive(Debug)]
struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: Option<&'a str>,
}

/// Well-formed passwd entries (`name:pw:uid:gid[:gecos:home[:shell]]`).
fn passwd_entries(contents: &[u8]) -> impl Iterator<Item = PasswdEntry<'_>> {
    records(contents).filter_map(|f| {
        let (name, uid, gid) = (*f.first()?, field_id(f.get(2)?)?, field_id(f.get(3)?)?);
        let home = f.get(5).copied().filter(|h| !h.is_empty());
        (!name.is_empty()).then_some(PasswdEntry {
            name,
            uid,
            gid,
            home,
        })
    })
}

/// One well-formed `/etc/group` entry.
#[derive(Debug)]
struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Well-formed group entries (`name:pw:gid[:member,member...]`).
fn group_entries(contents: &[u8]) -> impl Iterator<Item = GroupEntry<'_>> {
    records(contents).filter_map(|f| {
        let (name, gid) = (*f.first()?, field_id(f.get(2)?)?);
        let members = f
            .get(3)
            .map(|m| m.split(',').map(str::trim).filter(|m| !m.is_empty()))
            .map(Iterator::collect)
            .unwrap_or_default();
        (!name.is_empty()).then_some(GroupEntry { name, gid, members })
    })
}

/// Resolve an image's `Config.User` (`""`, `user`, `uid`, `user:group`,
/// `uid:gid`, `uid:group` or `user:gid`) against the image's `/etc/passwd`
/// and `/etc/group`.
///
/// - A name must exist (user in passwd, group in group), else an error.
/// - A numeric uid is used as is; its passwd entry, when there is one,
///   supplies the default gid and the home directory; otherwise gid is 0.
/// - A given group (name or gid) replaces the passwd gid.
/// - The empty string (and an empty user part, as in `:group`) is uid 0,
///   looked up in passwd like a numeric uid.
/// - Supplementary groups: when no group is given, every group listing the
///   passwd entry's name (found by name or by uid) as a member. This is
///   what runc's `GetExecUser` does for Docker and umoci; conversion.md
///   only asks for them for a name, but a bundle should run the process
///   with the groups those runtimes give it.
/// - The first matching entry wins; malformed lines are skipped.
pub fn resolve_user(
    user: &str,
    passwd: AccountFile<'_>,
    group: AccountFile<'_>,
) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = split_spec(user)?;
    let user_id = match user_part {
        "" => Id::Numeric(0),
        u => parse_id(u)?,
    };
    let group_id = group_part.map(parse_id).transpose()?;

    let (uid, passwd_gid, home, name) = lookup_user(&user_id, passwd)?;
    let gid = match &group_id {
        None => passwd_gid,
        Some(Id::Numeric(gid)) => *gid,
        Some(Id::Name(name)) => lookup_group(name, group)?,
    };
    let additional_gids = match (name, group_id) {
        (Some(name), None) => supplementary_gids(name, group.contents()),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: home.map(str::to_owned),
    })
}

/// Split `user[:group]`; an empty group part counts as no group.
fn split_spec(spec: &str) -> Result<(&str, Option<&str>), UserError> {
    let mut parts = spec.splitn(3, ':');
    let user = parts.next().unwrap_or_default();
    let group = parts.next().filter(|g| !g.is_empty());
    if parts.next().is_some() {
        return Err(UserError::Malformed {
            spec: spec.to_owned(),
        });
    }
    Ok((user, group))
}

/// uid, default gid, home, and the name of the matching passwd entry.
type UserLookup<'a> = (u32, u32, Option<&'a str>, Option<&'a str>);

fn lookup_user<'a>(user: &Id<'_>, passwd: AccountFile<'a>) -> Result<UserLookup<'a>, UserError> {
    let mut entries = passwd.contents().into_iter().flat_map(passwd_entries);
    match *user {
        Id::Numeric(uid) => Ok(match entries.find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home, Some(e.name)),
            None => (uid, 0, None, None),
        }),
        Id::Name(name) => match entries.find(|e| e.name == name) {
            Some(e) => Ok((e.uid, e.gid, e.home, Some(e.name))),
            None => Err(UserError::UnknownUser {
                name: name.to_owned(),
                passwd: passwd.state(),
            }),
        },
    }
}

fn lookup_group(name: &str, group: AccountFile<'_>) -> Result<u32, UserError> {
    group
        .contents()
        .into_iter()
        .flat_map(group_entries)
        .find(|g| g.name == name)
        .map(|g| g.gid)
        .ok_or_else(|| UserError::UnknownGroup {
            name: name.to_owned(),
            group: group.state(),
        })
}

/// Gids of every group listing `name` as a member, deduplicated.
fn supplementary_gids(name: &str, group: Option<&[u8]>) -> Vec<u32> {
    let mut gids = Vec::new();
    for g in group.into_iter().flat_map(group_entries) {
        if g.members.contains(&name) && !gids.contains(&g.gid) {
            gids.push(g.gid);
        }
    }
    gids
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line without colons
badid:x:notanumber:1:x:/nowhere:/bin/sh
huge:x:4294967295:1:x:/huge:/bin/sh
app:x:1000:1001:App User:/home/app:/bin/sh
nohome:x:1002:1002
app:x:2000:2000:duplicate, later entry loses:/dup:/bin/sh\r
";

    const GROUP: &str = "\
root:x:0:
daemon:x:1:
wheel:x:10:root,app
appgrp:x:1001:
staff:x:50: app , other
junk
dupwheel:x:10:app
audio:x:29:other
";

    fn resolve(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve_user(
            spec,
            AccountFile::Read(PASSWD.as_bytes()),
            AccountFile::Read(GROUP.as_bytes()),
        )
    }

    fn user(uid: u32, gid: u32, additional: &[u32], home: Option<&str>) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: additional.to_vec(),
            home: home.map(str::to_owned),
        }
    }

    #[test]
    fn all_forms_resolve() {
        let cases: &[(&str, ResolvedUser)] = &[
            // Empty: root, with root's home and the groups listing "root".
            ("", user(0, 0, &[10], Some("/root"))),
            // name: passwd gid + supplementary groups, deduplicated.
            ("app", user(1000, 1001, &[10, 50], Some("/home/app"))),
            // uid found in passwd: its gid, home and its name's groups (the
            // first entry with that uid names it).
            ("1000", user(1000, 1001, &[10, 50], Some("/home/app"))),
            ("0", user(0, 0, &[10], Some("/root"))),
            // uid not in passwd: gid 0, no home, no name to find groups by.
            ("4242", user(4242, 0, &[], None)),
            // A group given: no supplementary groups, however the user is given.
            ("1000:1001", user(1000, 1001, &[], Some("/home/app"))),
            // name:group
            ("app:wheel", user(1000, 10, &[], Some("/home/app"))),
            // uid:gid, neither in the files.
            ("4242:4343", user(4242, 4343, &[], None)),
            // uid:group
            ("4242:appgrp", user(4242, 1001, &[], None)),
            // name:gid
            ("app:7", user(1000, 7, &[], Some("/home/app"))),
            // ":group" is root with that group; "user:" has no group.
            (":wheel", user(0, 10, &[], Some("/root"))),
            ("app:", user(1000, 1001, &[10, 50], Some("/home/app"))),
            // Entry without a home field.
            ("nohome", user(1002, 1002, &[], None)),
            ("daemon", user(1, 1, &[], Some("/usr/sbin"))),
            // Largest allowed id.
            ("2147483647:2147483647", user(MAX_ID, MAX_ID, &[], None)),
        ];
        for (spec, want) in cases {
            assert_eq!(&resolve(spec).unwrap(), want, "spec {spec:?}");
        }
    }

    #[test]
    fn errors_name_the_culprit() {
        let unknown_user = |name: &str| UserError::UnknownUser {
            name: name.into(),
            passwd: FileState::Read,
        };
        let unknown_group = |name: &str| UserError::UnknownGroup {
            name: name.into(),
            group: FileState::Read,
        };
        let range = |id: &str| UserError::IdOutOfRange { id: id.into() };
        let cases: &[(&str, UserError)] = &[
            ("nobody", unknown_user("nobody")),
            // Malformed passwd lines never match.
            ("badid", unknown_user("badid")),
            ("huge", unknown_user("huge")),
            (
                "broken line without colons",
                unknown_user("broken line without colons"),
            ),
            ("app:nogroup", unknown_group("nogroup")),
            ("0:junk", unknown_group("junk")),
            ("2147483648", range("2147483648")),
            ("0:2147483648", range("2147483648")),
            ("99999999999999999999", range("99999999999999999999")),
            ("-1", range("-1")),
            ("app:-5", range("-5")),
            (
                "a:b:c",
                UserError::Malformed {
                    spec: "a:b:c".into(),
                },
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(&resolve(spec).unwrap_err(), want, "spec {spec:?}");
        }
        let msg = resolve("nobody").unwrap_err().to_string();
        assert!(
            msg.contains("\"nobody\"") && msg.contains("/etc/passwd"),
            "{msg}"
        );
    }

    #[test]
    fn absent_or_unreadable_files() {
        use AccountFile::{Absent, Read, Unreadable};
        let (passwd, group) = (Read(PASSWD.as_bytes()), Read(GROUP.as_bytes()));
        let null = Unreadable("not a regular file");
        for missing in [Absent, null] {
            // Numbers need no files (runc reads an unreadable file as empty).
            assert_eq!(
                resolve_user("", missing, missing).unwrap(),
                user(0, 0, &[], None)
            );
            assert_eq!(
                resolve_user("1000:1000", missing, missing).unwrap(),
                user(1000, 1000, &[], None)
            );
            assert_eq!(
                resolve_user("1000", missing, group).unwrap(),
                user(1000, 0, &[], None)
            );
            // A named user without /etc/group: no supplementary groups, no error.
            assert_eq!(
                resolve_user("app", passwd, missing).unwrap(),
                user(1000, 1001, &[], Some("/home/app"))
            );
            assert_eq!(
                resolve_user("app:wheel", passwd, missing).unwrap_err(),
                UserError::UnknownGroup {
                    name: "wheel".into(),
                    group: missing.state()
                }
            );
            assert_eq!(
                resolve_user("app", missing, group).unwrap_err(),
                UserError::UnknownUser {
                    name: "app".into(),
                    passwd: missing.state()
                }
            );
        }
        let err = resolve_user("app", Absent, group).unwrap_err().to_string();
        assert!(
            err.contains("/etc/passwd in the image (the image has no such file)"),
            "{err}"
        );
        let err = resolve_user("app", null, group).unwrap_err().to_string();
        assert!(
            err.contains("/etc/passwd in the image (it cannot be read: not a regular file)"),
            "{err}"
        );
    }

    #[test]
    fn alpine_root_groups() {
        // The start of Alpine's files: root is a member of most groups.
        let passwd = b"root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\n";
        let group = b"root:x:0:root\nbin:x:1:root,bin,daemon\ndaemon:x:2:root,bin,daemon\n\
            sys:x:3:root,bin,adm\nadm:x:4:root,adm,daemon\ntty:x:5:\ndisk:x:6:root,adm\n\
            lp:x:7:lp\nkmem:x:9:\nwheel:x:10:root\nfloppy:x:11:root\n";
        let group = &group[..];
        for spec in ["", "0", "root"] {
            let got = resolve_user(spec, AccountFile::Read(passwd), AccountFile::Read(group));
            assert_eq!(
                got.unwrap().additional_gids,
                [0, 1, 2, 3, 4, 6, 10, 11],
                "spec {spec:?}"
            );
        }
    }

    #[test]
    fn non_utf8_lines_are_skipped() {
        let mut passwd = b"caf\xe9:x:5:5::/x:/bin/sh\n".to_vec();
        passwd.extend_from_slice(b"bob:x:6:6::/home/bob:/bin/sh\n");
        let got = resolve_user("bob", AccountFile::Read(&passwd), AccountFile::Absent).unwrap();
        assert_eq!(got, user(6, 6, &[], Some("/home/bob")));
    }
}
