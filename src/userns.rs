//! Rootless: what an unprivileged user can do as root of a user namespace
//! of their own.
//!
//! Since Linux 5.11 overlayfs mounts inside a user namespace, with its
//! metadata in `user.overlay.*` xattrs (`userxattr`) instead of the
//! `trusted.*` ones only real root may write, and since 5.8 anyone may
//! create the 0/0 character device overlayfs uses as a whiteout. So an
//! unprivileged `occystrap run` that first becomes root of a namespace
//! mapping only its own ids (as `unshare -r` does) gets the layer store and
//! an overlay rootfs too. One id is all such a namespace has: every file
//! is the user's, shown as root's, as in any rootless copy bundle; image
//! owners cannot be kept.

/// One line of `/proc/self/uid_map`: inside, outside, count.
type Range = (u32, u32, u32);

/// Read each time, not cached: [`enter`] changes it.
fn uid_map() -> Vec<Range> {
    let text = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some((a, b, c)),
                _ => None,
            }
        })
        .collect()
}

/// Whether this process is in the initial user namespace, where
/// overlayfs keeps its metadata in `trusted.overlay.*` (elsewhere it must
/// be mounted `userxattr`).
pub fn initial() -> bool {
    matches!(uid_map().as_slice(), [] | [(0, 0, u32::MAX)])
}

/// Whether this process is root over more ids than its own: it can give
/// files the image's owners and make device nodes. Root of a namespace
/// mapping one id, as [`enter`] makes, cannot.
pub fn privileged() -> bool {
    // No map to read (no /proc): assume the initial namespace.
    let map = uid_map();
    nix::unistd::geteuid().is_root()
        && (map.is_empty() || map.iter().map(|&(_, _, n)| u64::from(n)).sum::<u64>() > 1)
}

/// Become root of a new user namespace that maps only this process's
/// uid and gid, with a mount namespace of its own (whose mounts go when
/// the process does). Call before any thread is started: the kernel
/// refuses `unshare(CLONE_NEWUSER)` to a multithreaded process.
pub fn enter() -> std::io::Result<()> {
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
    // An unprivileged process may map its own gid only once it has given
    // up setgroups(2) in the namespace.
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    // Nothing mounted here propagates back to the host's namespace.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}
