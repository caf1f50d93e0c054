//! Dropping privileges once capture is open.
//!
//! Capture needs CAP_NET_RAW (libpcap) or CAP_BPF + CAP_NET_ADMIN (eBPF, to attach), and
//! only while opening. Afterwards the daemon switches to an unprivileged user: its open
//! capture handles keep working, and a uid change away from root clears every capability.

use anyhow::{bail, Context, Result};
use std::ffi::CString;

/// (uid, gid) of a user, if it exists.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both owned here and large enough
    // (it reports ERANGE otherwise); `result` points at `pwd` or is null.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some((pwd.pw_uid, pwd.pw_gid))
}

/// Switch to `user` for good: supplementary groups cleared, then group, then user.
pub fn drop_to(user: &str) -> Result<()> {
    let (uid, gid) = lookup_user(user).with_context(|| format!("privileges.user: no user named {user:?}"))?;
    // SAFETY: plain system calls with integer arguments; failures are checked.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            bail!("setgroups: {}", std::io::Error::last_os_error());
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            bail!("setresgid({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            bail!("setresuid({uid}): {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}
