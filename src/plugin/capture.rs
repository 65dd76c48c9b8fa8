//! Records the values Terraform sends, for codec fixtures.
//!
//! With `SHARDFORM_CAPTURE_DIR` set, every DynamicValue a request carries is
//! written there as received (`<n>-<rpc>-<field>-<type>.msgpack` or `.json`).
//! A developer tool: the files hold whatever the configuration holds,
//! passwords included, so it is off unless asked for.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::wire::tfplugin5::DynamicValue;

pub const CAPTURE_DIR_ENV: &str = "SHARDFORM_CAPTURE_DIR";

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

fn directory() -> Option<PathBuf> {
    std::env::var_os(CAPTURE_DIR_ENV).map(PathBuf::from)
}

pub fn value(rpc: &str, field: &str, type_name: &str, value: Option<&DynamicValue>) {
    let (Some(dir), Some(value)) = (directory(), value) else {
        return;
    };
    let (bytes, extension) = if value.msgpack.is_empty() {
        (&value.json, "json")
    } else {
        (&value.msgpack, "msgpack")
    };
    write(dir, rpc, field, type_name, bytes, extension);
}

pub fn raw_state(type_name: &str, json: &[u8]) {
    if let Some(dir) = directory() {
        write(
            dir,
            "UpgradeResourceState",
            "raw_state",
            type_name,
            json,
            "json",
        );
    }
}

fn write(dir: PathBuf, rpc: &str, field: &str, type_name: &str, bytes: &[u8], extension: &str) {
    let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
    let name = format!(
        "{}-{n:03}-{rpc}-{field}-{type_name}.{extension}",
        std::process::id()
    );
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(&name), bytes))
    {
        log::warn!("cannot write capture {name}: {e}");
    }
}
