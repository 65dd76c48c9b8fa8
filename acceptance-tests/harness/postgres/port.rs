//! Free loopback ports for test servers.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// A port on 127.0.0.1 that was free a moment ago and that this process has
/// not handed out before. The kernel picks it (bind to port 0); the caller
/// must still retry if another process takes it before the server binds.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .expect("cannot bind an ephemeral port on 127.0.0.1")
            .port();
        if HANDED_OUT.lock().expect("port registry lock").insert(port) {
            return port;
        }
    }
}
