//! Dropping privileges once capture is open.
//!
//! Capture needs CAP_NET_RAW (libpcap) or CAP_BPF + CAP_NET_ADMIN (eBPF, to attach).
//! Once capture is open the daemon switches to an unprivileged user and keeps only the
//! capabilities its backend needs to open capture again (an interface that goes away and
//! comes back): every other capability, and root, are gone.

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

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;
pub const CAP_BPF: u32 = 39;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Switch to `user` for good, keeping only the capabilities in `keep` (effective and
/// permitted; nothing inheritable).
pub fn drop_to(user: &str, keep: &[u32]) -> Result<()> {
    let (uid, gid) = lookup_user(user).with_context(|| format!("privileges.user: no user named {user:?}"))?;
    let mut data = [CapData::default(); 2];
    for &c in keep {
        let d = &mut data[(c / 32) as usize];
        d.effective |= 1 << (c % 32);
        d.permitted |= 1 << (c % 32);
    }
    let hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    // SAFETY: plain system calls with integer arguments, and capset with a valid header
    // and two data words (version 3); failures are checked.
    unsafe {
        // Keep the permitted set across the uid change, then trim it with capset.
        if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            bail!("prctl(PR_SET_KEEPCAPS): {}", std::io::Error::last_os_error());
        }
        if libc::setgroups(0, std::ptr::null()) != 0 {
            bail!("setgroups: {}", std::io::Error::last_os_error());
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            bail!("setresgid({gid}): {}", std::io::Error::last_os_error());
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            bail!("setresuid({uid}): {}", std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) != 0 {
            bail!("capset: {}", std::io::Error::last_os_error());
        }
        let _ = libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
    }
    Ok(())
}
