//! One watchdog device: open, WDIOC_SETTIMEOUT/GETTIMEOUT, keepalive by write, magic close.
//! A FIFO or a plain file answers the ioctls with ENOTTY; that is reported, not fatal, and
//! writes keep working (the test harness reads the FIFO to see what the agent did).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

use super::{ioctl, WatchdogError};

/// The byte the kernel watches for before a close: without it a close leaves the timer
/// running (`magic close`).
const MAGIC_CLOSE: &[u8] = b"V";
/// A keepalive: the kernel pings on any write. It must not contain `V`, which would allow
/// a close to stop the timer.
const KEEPALIVE: &[u8] = b"1";

/// Whether the device could set and report its timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeoutSupport {
    /// WDIOC_SETTIMEOUT/GETTIMEOUT worked; this is the timeout the device runs with.
    Reported(u32),
    /// The ioctls are not supported (ENOTTY: a FIFO or plain file); keepalives are writes.
    Unsupported,
}

/// What arming did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Armed {
    /// Timeout requested.
    pub requested: u32,
    /// What the device said.
    pub timeout: TimeoutSupport,
}

impl Armed {
    /// The device's timeout, when it could tell.
    pub fn device_timeout(&self) -> Option<u32> {
        match self.timeout {
            TimeoutSupport::Reported(t) => Some(t),
            TimeoutSupport::Unsupported => None,
        }
    }
}

/// Check that `path` can serve as a watchdog without opening it (opening a real device
/// starts its countdown): it exists, is a character device, FIFO or file, and is writable.
pub fn check_device(path: &Path) -> Result<(), WatchdogError> {
    let meta = std::fs::metadata(path).map_err(|source| WatchdogError::Io {
        path: path.to_path_buf(),
        op: "stat",
        source,
    })?;
    let kind = meta.file_type();
    if !(kind.is_char_device() || kind.is_fifo() || kind.is_file()) {
        return Err(WatchdogError::Unusable {
            path: path.to_path_buf(),
            why: "not a character device, FIFO or file".into(),
        });
    }
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).map_err(|e| WatchdogError::Unusable {
        path: path.to_path_buf(),
        why: format!("not writable by this user: {e}"),
    })
}

/// The device, open while armed.
#[derive(Debug)]
pub struct WatchdogDevice {
    path: PathBuf,
    file: Option<File>,
}

impl WatchdogDevice {
    /// A closed device at `path`.
    pub fn new(path: impl Into<PathBuf>) -> WatchdogDevice {
        WatchdogDevice {
            path: path.into(),
            file: None,
        }
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the device is open (armed).
    pub fn is_armed(&self) -> bool {
        self.file.is_some()
    }

    /// Open the device if needed, set the timeout, read it back, and send a keepalive.
    /// Arming an open device only changes its timeout. On error the device is closed again
    /// with the magic close, so a failed arm never leaves a countdown running.
    pub fn arm(&mut self, timeout_secs: u32) -> Result<Armed, WatchdogError> {
        if self.file.is_none() {
            self.file = Some(self.open()?);
        }
        match self.configure(timeout_secs) {
            Ok(armed) => Ok(armed),
            Err(e) => {
                if let Err(close) = self.disarm() {
                    tracing::warn!(error = %close, "closing the watchdog after a failed arm");
                }
                Err(e)
            }
        }
    }

    fn open(&self) -> Result<File, WatchdogError> {
        // Non-blocking: opening a FIFO for writing would otherwise wait for a reader
        // forever, and a full FIFO must fail a keepalive rather than hang the agent.
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
            .map_err(|source| match source.raw_os_error() {
                Some(libc::ENXIO) => WatchdogError::NoReader {
                    path: self.path.clone(),
                },
                _ => WatchdogError::Io {
                    path: self.path.clone(),
                    op: "open for writing",
                    source,
                },
            })
    }

    fn configure(&mut self, timeout_secs: u32) -> Result<Armed, WatchdogError> {
        let path = self.path.clone();
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| WatchdogError::NotArmed { path: path.clone() })?;
        let timeout = match ioctl::set_timeout(file.as_fd(), timeout_secs) {
            Ok(_) => match ioctl::get_timeout(file.as_fd()) {
                Ok(actual) => TimeoutSupport::Reported(actual),
                Err(nix::Error::ENOTTY | nix::Error::EINVAL | nix::Error::EOPNOTSUPP) => {
                    tracing::warn!(device = %path.display(), "watchdog timeout set but cannot be read back (WDIOC_GETTIMEOUT unsupported)");
                    TimeoutSupport::Unsupported
                }
                Err(source) => {
                    return Err(WatchdogError::Ioctl {
                        path,
                        op: "WDIOC_GETTIMEOUT",
                        source,
                    })
                }
            },
            Err(nix::Error::ENOTTY) => {
                tracing::warn!(device = %path.display(), timeout_secs, "watchdog timeout cannot be set or verified (ENOTTY: not a watchdog device); keepalives are plain writes");
                TimeoutSupport::Unsupported
            }
            Err(source) => {
                return Err(WatchdogError::Ioctl {
                    path,
                    op: "WDIOC_SETTIMEOUT",
                    source,
                })
            }
        };
        self.keepalive()?;
        Ok(Armed {
            requested: timeout_secs,
            timeout,
        })
    }

    /// One keepalive (a write: the kernel pings on any write).
    pub fn keepalive(&mut self) -> Result<(), WatchdogError> {
        let path = self.path.clone();
        let file = self
            .file
            .as_mut()
            .ok_or(WatchdogError::NotArmed { path: path.clone() })?;
        file.write_all(KEEPALIVE)
            .map_err(|source| WatchdogError::Io {
                path,
                op: "keepalive write",
                source,
            })
    }

    /// Magic close: write `V`, then close. A closed device is left alone. The file is
    /// closed even when the write fails (the error says the timer may still run).
    pub fn disarm(&mut self) -> Result<(), WatchdogError> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        let written = file.write_all(MAGIC_CLOSE);
        drop(file);
        written.map_err(|source| WatchdogError::Io {
            path: self.path.clone(),
            op: "magic close write (the timer may still run)",
            source,
        })
    }
}

impl Drop for WatchdogDevice {
    fn drop(&mut self) {
        // An agent that exits without disarming leaves the countdown running on purpose
        // (that is the fence); only an explicit `disarm` writes the magic byte.
        if self.file.is_some() {
            tracing::warn!(device = %self.path.display(), "watchdog closed without magic close; the timer keeps running");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;

    fn mkfifo(dir: &Path) -> PathBuf {
        let path = dir.join("watchdog.fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        path
    }

    fn open_reader(path: &Path) -> File {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .expect("open the FIFO for reading")
    }

    /// Everything buffered in the FIFO, and whether the writer has closed (EOF).
    fn drain(reader: &mut File) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (out, false),
                Err(e) => panic!("read the FIFO: {e}"),
            }
        }
    }

    #[test]
    fn on_a_fifo_arms_feeds_and_closes_with_the_magic_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = mkfifo(dir.path());
        check_device(&path).expect("a FIFO passes the check");
        let mut reader = open_reader(&path);
        let mut device = WatchdogDevice::new(&path);
        let armed = device.arm(15).expect("arm");
        assert_eq!(
            armed.timeout,
            TimeoutSupport::Unsupported,
            "ENOTTY on a FIFO"
        );
        assert_eq!(armed.device_timeout(), None);
        assert!(device.is_armed());
        assert_eq!(drain(&mut reader), (b"1".to_vec(), false));
        device.keepalive().expect("keepalive");
        device.keepalive().expect("keepalive");
        // Re-arming an open device (a ttl change) does not reopen it.
        device.arm(10).expect("re-arm");
        assert_eq!(drain(&mut reader), (b"111".to_vec(), false));
        device.disarm().expect("disarm");
        assert!(!device.is_armed());
        assert_eq!(drain(&mut reader), (b"V".to_vec(), true));
        device
            .disarm()
            .expect("disarming a closed device is a no-op");
        let e = device.keepalive().expect_err("not armed");
        assert!(e.to_string().contains("not armed"), "{e}");
    }

    #[test]
    fn a_fifo_without_reader_fails_to_arm_with_enxio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = mkfifo(dir.path());
        let mut device = WatchdogDevice::new(&path);
        let e = device.arm(15).expect_err("no reader");
        assert!(matches!(e, WatchdogError::NoReader { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains("ENXIO"),
            "{text}"
        );
        assert!(!device.is_armed());
    }

    #[test]
    fn on_a_plain_file_the_ioctls_fail_with_enotty_and_writes_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("watchdog.file");
        std::fs::write(&path, b"").expect("create");
        let mut device = WatchdogDevice::new(&path);
        let armed = device.arm(25).expect("arm on a file");
        assert_eq!(armed.timeout, TimeoutSupport::Unsupported);
        device.keepalive().expect("keepalive");
        device.disarm().expect("disarm");
        assert_eq!(std::fs::read(&path).expect("read"), b"11V");
    }

    #[test]
    fn a_missing_device_fails_the_check_and_the_arm_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-watchdog");
        let e = check_device(&path).expect_err("missing");
        assert!(e.to_string().contains("no-such-watchdog"), "{e}");
        let e = WatchdogDevice::new(&path).arm(10).expect_err("missing");
        let text = e.to_string();
        assert!(
            text.contains("open for writing") && text.contains("no-such-watchdog"),
            "{text}"
        );
        let e = check_device(dir.path()).expect_err("a directory");
        assert!(e.to_string().contains("not a character device"), "{e}");
    }
}
