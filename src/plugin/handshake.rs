//! The pure parts of go-plugin's start-up handshake: the magic cookie, the
//! protocol version negotiation and the line printed on stdout.
//! No I/O here, so every rule is unit-tested.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use std::fmt;
use std::path::Path;

/// Terraform sets this variable to [`MAGIC_COOKIE_VALUE`] when it launches a provider.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// Comma list of the application protocol versions the client speaks.
pub const PROTOCOL_VERSIONS_KEY: &str = "PLUGIN_PROTOCOL_VERSIONS";
/// go-plugin's own handshake format version (the first field of the line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The only Terraform plugin protocol this crate speaks.
pub const PROTOCOL_VERSION: u32 = 5;

/// Where the host wants the socket's directory, when it says (go-plugin
/// passes it on if its host configured one); the temporary directory otherwise.
pub const UNIX_SOCKET_DIR_KEY: &str = "PLUGIN_UNIX_SOCKET_DIR";
/// PEM of Terraform's client certificate; its presence means AutoMTLS.
pub const CLIENT_CERT_KEY: &str = "PLUGIN_CLIENT_CERT";

/// Why the process cannot take part in a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The magic cookie is missing or wrong: a human started the binary.
    NotLaunchedAsPlugin,
    /// The client offered protocol versions, none of them 5.
    UnsupportedProtocol { offered: String },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotLaunchedAsPlugin => f.write_str("not launched by Terraform (no magic cookie)"),
            Self::UnsupportedProtocol { offered } => write!(
                f,
                "this provider speaks Terraform plugin protocol {PROTOCOL_VERSION}, but the client \
                 offered only version(s) {offered:?}; use a Terraform release that supports \
                 protocol {PROTOCOL_VERSION} (0.12 or later)"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Checks the magic cookie (the value of [`MAGIC_COOKIE_KEY`], if set).
pub fn check_cookie(value: Option<&str>) -> Result<(), HandshakeError> {
    match value {
        Some(MAGIC_COOKIE_VALUE) => Ok(()),
        _ => Err(HandshakeError::NotLaunchedAsPlugin),
    }
}

/// The message for a human who started the binary directly (go-plugin's wording).
pub fn not_a_plugin_message(registry_address: &str) -> String {
    format!(
        "This binary is a plugin ({registry_address}). These are not meant to be executed \
         directly. Please execute the program that consumes these plugins, which will load \
         any plugins automatically.\nTo debug the provider, run it with --debug."
    )
}

/// Picks protocol 5 from the client's offer (the value of [`PROTOCOL_VERSIONS_KEY`]).
/// Like go-plugin, an absent or empty offer means the client does not negotiate and
/// takes our default, and entries that are not numbers are skipped.
pub fn negotiate_version(offered: Option<&str>) -> Result<u32, HandshakeError> {
    let offered = offered.map(str::trim).unwrap_or_default();
    if offered.is_empty() {
        return Ok(PROTOCOL_VERSION);
    }
    let speaks_ours = offered
        .split(',')
        .filter_map(|v| v.trim().parse::<u32>().ok())
        .any(|v| v == PROTOCOL_VERSION);
    if speaks_ours {
        Ok(PROTOCOL_VERSION)
    } else {
        Err(HandshakeError::UnsupportedProtocol {
            offered: offered.to_owned(),
        })
    }
}

/// The handshake line (without newline):
/// `CORE-VERSION|APP-VERSION|unix|SOCKET|PROTOCOL|CERT`, where CERT is the
/// server certificate's DER in unpadded standard base64, or empty in plaintext.
/// Always a unix socket, as go-plugin serves on Linux: a loopback TCP port
/// would be reachable by every local user.
pub fn handshake_line(socket: &Path, server_cert_der: Option<&[u8]>) -> String {
    let cert = server_cert_der
        .map(|der| STANDARD_NO_PAD.encode(der))
        .unwrap_or_default();
    format!(
        "{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|{}|grpc|{cert}",
        socket.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_must_match_exactly() {
        assert_eq!(check_cookie(Some(MAGIC_COOKIE_VALUE)), Ok(()));
        assert_eq!(check_cookie(None), Err(HandshakeError::NotLaunchedAsPlugin));
        assert_eq!(
            check_cookie(Some("")),
            Err(HandshakeError::NotLaunchedAsPlugin)
        );
        assert_eq!(
            check_cookie(Some(&MAGIC_COOKIE_VALUE[1..])),
            Err(HandshakeError::NotLaunchedAsPlugin)
        );
    }

    #[test]
    fn not_a_plugin_message_names_the_provider() {
        let msg = not_a_plugin_message("registry.terraform.io/shardform/citus");
        assert!(msg.contains("This binary is a plugin"));
        assert!(msg.contains("registry.terraform.io/shardform/citus"));
    }

    #[test]
    fn negotiates_five_in_any_order() {
        for offer in ["5,6", "6,5", "5", " 6 , 5 ", "4,5,6", "x,5"] {
            assert_eq!(negotiate_version(Some(offer)), Ok(5), "offer {offer:?}");
        }
    }

    #[test]
    fn no_offer_means_our_default() {
        assert_eq!(negotiate_version(None), Ok(5));
        assert_eq!(negotiate_version(Some("")), Ok(5));
    }

    #[test]
    fn offer_without_five_is_rejected() {
        for offer in ["6", "4,6", "55", "x"] {
            let err = negotiate_version(Some(offer)).unwrap_err();
            assert_eq!(
                err,
                HandshakeError::UnsupportedProtocol {
                    offered: offer.into()
                }
            );
            assert!(err.to_string().contains("protocol 5"));
        }
    }

    #[test]
    fn unix_line_with_certificate() {
        let socket = Path::new("/tmp/plugin1/plugin.sock");
        // Four bytes: base64 with padding would end in "==".
        let line = handshake_line(socket, Some(&[0x30, 0x82, 0x01, 0xff]));
        assert_eq!(line, "1|5|unix|/tmp/plugin1/plugin.sock|grpc|MIIB/w");
    }

    #[test]
    fn plaintext_line_has_empty_certificate() {
        let socket = Path::new("/tmp/x/plugin.sock");
        assert_eq!(handshake_line(socket, None), "1|5|unix|/tmp/x/plugin.sock|grpc|");
    }
}
