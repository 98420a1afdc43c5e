//! The Linux watchdog ioctls (`linux/watchdog.h`), and nothing else. The only `unsafe` in
//! the agent: nix's ioctl macros generate `unsafe fn`s because the kernel writes through
//! the pointer; each wrapper passes a pointer to a local `c_int` that outlives the call.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc::c_int;

const WATCHDOG_IOCTL_BASE: u8 = b'W';

nix::ioctl_readwrite!(wdioc_settimeout, WATCHDOG_IOCTL_BASE, 6, c_int);
nix::ioctl_read!(wdioc_gettimeout, WATCHDOG_IOCTL_BASE, 7, c_int);

/// WDIOC_SETTIMEOUT: ask for `secs`; the driver answers with the timeout it actually set.
pub fn set_timeout(fd: BorrowedFd<'_>, secs: u32) -> nix::Result<u32> {
    let mut value = c_int::try_from(secs).map_err(|_| nix::Error::EINVAL)?;
    // SAFETY: `value` is a live c_int for the whole call, as WDIOC_SETTIMEOUT expects.
    unsafe { wdioc_settimeout(fd.as_raw_fd(), &mut value) }?;
    Ok(u32::try_from(value).unwrap_or(0))
}

/// WDIOC_GETTIMEOUT: the timeout the device runs with.
pub fn get_timeout(fd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut value: c_int = 0;
    // SAFETY: `value` is a live c_int for the whole call, as WDIOC_GETTIMEOUT expects.
    unsafe { wdioc_gettimeout(fd.as_raw_fd(), &mut value) }?;
    Ok(u32::try_from(value).unwrap_or(0))
}
