//! Dropping privileges in workers: when forklb starts as root with
//! `user`/`group` set, each worker switches to that identity right after
//! fork (supplementary groups, then gid, then uid — in that order, since
//! only root may change groups). The master stays root to bind, reopen logs
//! and signal. Log files are handed to the worker user so workers can
//! re-open them on USR1.

use nix::unistd::{Gid, Group, Uid, User};
use std::io;
use std::os::fd::AsRawFd;

#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub uid: Uid,
    pub gid: Gid,
}

/// Looks up `user` and `group` (default: the user's primary group).
/// `Ok(None)` when no user is configured.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, String> {
    let Some(name) = user else {
        if let Some(g) = group {
            // A group alone changes only the gid.
            let grp = lookup_group(g)?;
            return Ok(Some(Identity {
                user: String::new(),
                uid: Uid::effective(),
                gid: grp,
            }));
        }
        return Ok(None);
    };
    let u = User::from_name(name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| format!("unknown user {name:?}"))?;
    let gid = match group {
        Some(g) => lookup_group(g)?,
        None => u.gid,
    };
    Ok(Some(Identity {
        user: name.to_owned(),
        uid: u.uid,
        gid,
    }))
}

fn lookup_group(name: &str) -> Result<Gid, String> {
    Group::from_name(name)
        .map_err(|e| format!("cannot look up group {name:?}: {e}"))?
        .map(|g| g.gid)
        .ok_or_else(|| format!("unknown group {name:?}"))
}

/// The identity the workers take for `config`'s `user`/`group`: None
/// when none is configured, or when we are not root (then said once, with
/// `warn_ignored`: at start, or at a reload that changed them).
pub fn for_workers(
    config: &crate::config::Config,
    warn_ignored: bool,
) -> Result<Option<Identity>, String> {
    match resolve(config.user.as_deref(), config.group.as_deref())? {
        Some(id) if !can_switch() => {
            if warn_ignored {
                log::warn!(
                    "not running as root: user/group ({}) ignored, workers run as the current user",
                    id.user
                );
            }
            Ok(None)
        }
        id => Ok(id),
    }
}

/// True if switching identity is possible (we are root).
pub fn can_switch() -> bool {
    Uid::effective().is_root()
}

/// Becomes `id` for good (in a freshly forked worker).
pub fn drop_to(id: &Identity) -> io::Result<()> {
    nix::unistd::setgroups(&[id.gid]).map_err(io::Error::from)?;
    nix::unistd::setgid(id.gid).map_err(io::Error::from)?;
    if id.uid != Uid::effective() {
        nix::unistd::setuid(id.uid).map_err(io::Error::from)?;
    }
    Ok(())
}

/// Gives an open log file to the worker user. Its group stays as it is, as
/// nginx does: logrotate's `create 0640 root adm` keeps the file readable to
/// the `adm` group (log readers and shippers) after the reopen.
pub fn chown_file(file: &std::fs::File, id: &Identity) -> io::Result<()> {
    // `gid_t::MAX` is fchown's "leave the group as it is" (-1).
    const KEEP_GROUP: libc::gid_t = libc::gid_t::MAX;
    // SAFETY: fchown on a descriptor we hold.
    let r = unsafe { libc::fchown(file.as_raw_fd(), id.uid.as_raw(), KEEP_GROUP) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
