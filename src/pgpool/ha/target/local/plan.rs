//! Plan-time checks of this machine for a new group: its base directory
//! and its ports.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use crate::framework::{AttrPath, Diagnostics};
use crate::pgpool::ha::layout::{MARKER, PORTS_PER_GROUP};

/// Ports from `base` that nothing listens on.
pub fn ports_free(base: u16) -> Result<(), u16> {
    // Checked: the last port of a group at the top of the range is 65535.
    let last = base.checked_add(PORTS_PER_GROUP - 1).ok_or(base)?;
    for port in base..=last {
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            return Err(port);
        }
    }
    Ok(())
}

/// Where the kernel's ephemeral ports begin (the first field of
/// `ip_local_port_range`).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A block of free consecutive ports from 10000 up to where the kernel's
/// ephemeral ports begin. Below it on purpose: a client connecting to a dead
/// node's port inside the ephemeral range can be given that very port as
/// its own and connect to itself (TCP simultaneous open), then wait for ever.
/// The starting block is picked at random so concurrent groups rarely collide.
pub fn choose_port_base() -> Option<u16> {
    const LOW: u16 = 10000;
    let high = ephemeral_low().max(LOW + PORTS_PER_GROUP);
    let blocks = (high - LOW) / PORTS_PER_GROUP;
    let seed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .ok()?
        .local_addr()
        .ok()?
        .port();
    (0..blocks)
        .map(|i| LOW + ((seed % blocks + i) % blocks) * PORTS_PER_GROUP)
        .find(|b| ports_free(*b).is_ok())
}

/// Plan-time checks of the base directory: creatable or empty, or already this group.
pub fn check_base_dir(dir: &Path, diags: &mut Diagnostics) {
    let path = AttrPath::root("base_dir");
    if dir.exists() {
        if !dir.is_dir() {
            diags.error_at(
                path,
                "Base directory is not a directory",
                format!("{} exists and is not a directory.", dir.display()),
            );
            return;
        }
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !dir.join(MARKER).exists() {
            diags.error_at(
                path,
                "Base directory in use",
                format!(
                    "{} is not empty and holds no pgpool_ha group.",
                    dir.display()
                ),
            );
            return;
        }
    }
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let c = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: `c` is a valid NUL-terminated path.
    let writable =
        existing.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0;
    if !writable {
        diags.error_at(
            path,
            "Base directory not writable",
            format!(
                "The provider cannot create {} because {} is not a directory it may write into.",
                dir.display(),
                existing.display()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_highest_port_base_is_checked_without_overflow() {
        let top = 65535 - super::PORTS_PER_GROUP + 1;
        // Whatever is bound there, the check answers instead of overflowing.
        let _ = super::ports_free(top);
        assert_eq!(super::ports_free(65535), Err(65535));
    }
}
