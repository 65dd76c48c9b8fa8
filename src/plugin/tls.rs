//! AutoMTLS, server side: a fresh self-signed certificate per process and the
//! TLS acceptor that serves it.
//!
//! Terraform pins the certificate we print in the handshake line (it becomes the
//! client's only root), so the certificate needs no CA: it is an end entity for
//! `localhost` usable for serverAuth and clientAuth, which both Go's and rustls'
//! verifiers accept when that very certificate is the trust anchor.
//!
//! The acceptor requires a client certificate and leaves the decision to a
//! verifier: in plugin mode the one that accepts only Terraform's own
//! certificate (`client_cert.rs`).

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::ServerConfig;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_rustls::TlsAcceptor;

/// The name in the certificate; go-plugin's client sets it as the server name.
pub const SERVER_NAME: &str = "localhost";
/// ALPN for HTTP/2; gRPC clients (tonic, recent grpc-go) insist on it.
const ALPN_H2: &[u8] = b"h2";
/// Tolerates clocks of client and server disagreeing a little.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
const VALIDITY: Duration = Duration::from_secs(366 * 24 * 60 * 60);

#[derive(Debug)]
pub enum TlsError {
    /// rcgen could not create the key or the certificate.
    Certificate(rcgen::Error),
    /// rustls refused the certificate, key or protocol configuration.
    Config(rustls::Error),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(e) => write!(f, "cannot generate the TLS server certificate: {e}"),
            Self::Config(e) => write!(f, "cannot configure TLS: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Certificate(e) => Some(e),
            Self::Config(e) => Some(e),
        }
    }
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        Self::Certificate(e)
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Config(e)
    }
}

/// The server's certificate and private key, both DER.
pub struct ServerIdentity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl ServerIdentity {
    /// Generates an ECDSA P-256 key and a self-signed certificate for `localhost`.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = certificate_params(SystemTime::now())?.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// The certificate's DER, as printed (base64) in the handshake line.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.as_ref()
    }

    /// A TLS acceptor serving this identity, offering ALPN `h2`, and taking
    /// only clients that `clients` accepts.
    pub fn acceptor(&self, clients: Arc<dyn ClientCertVerifier>) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor::from(Arc::new(self.server_config(clients)?)))
    }

    fn server_config(&self, clients: Arc<dyn ClientCertVerifier>) -> Result<ServerConfig, TlsError> {
        // Explicit provider: no reliance on a process-wide default being installed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // TLS 1.3 only: it ties a client's signature scheme to its key's curve
        // (under 1.2 Go signs with its P-521 key under the P-384 scheme), and
        // every Terraform since 0.12 speaks it.
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(config)
    }
}

fn certificate_params(now: SystemTime) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "shardform");
    name.push(DnType::CommonName, SERVER_NAME);
    params.distinguished_name = name;
    // An end entity, not a CA: rustls-based clients reject a CA as the leaf.
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // rcgen takes `time::OffsetDateTime`, which adds std durations to a date.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch.saturating_sub(BACKDATE);
    params.not_after = epoch + since_epoch + VALIDITY;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ClientConfig, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A client that trusts exactly `identity`'s certificate, as Terraform does.
    fn pinned_client(identity: &ServerIdentity, client_auth: bool) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots
            .add(identity.cert.clone())
            .expect("certificate parses as a trust anchor");
        let builder = ClientConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = if client_auth {
            builder
                .with_client_auth_cert(
                    vec![identity.cert.clone()],
                    PrivateKeyDer::Pkcs8(identity.key.clone_key()),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        config
    }

    /// Runs a TLS handshake over an in-memory pipe and one round trip of bytes.
    async fn handshake(acceptor: TlsAcceptor, client: ClientConfig) -> Option<Vec<u8>> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server_io).await.expect("server handshake");
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.flush().await.unwrap();
            alpn
        });
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        let mut tls = TlsConnector::from(Arc::new(client))
            .connect(name, client_io)
            .await
            .expect("client accepts the pinned certificate for localhost");
        tls.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.await.unwrap()
    }

    /// The real proof of SAN `localhost`, serverAuth and "not a CA": webpki
    /// verifies the pinned certificate as a server's end entity.
    #[tokio::test]
    async fn pinned_client_completes_handshake_with_h2() {
        let identity = ServerIdentity::generate().unwrap();
        let clients = crate::plugin::client_cert::PinnedClientCert::from_der(identity.cert.clone());
        let alpn = handshake(identity.acceptor(clients).unwrap(), pinned_client(&identity, true)).await;
        assert_eq!(alpn.as_deref(), Some(ALPN_H2));
    }

    /// clientAuth usage: the same certificate verifies as a client end entity.
    #[tokio::test]
    async fn certificate_is_valid_for_client_auth() {
        let identity = ServerIdentity::generate().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(identity.cert.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring())
            .build()
            .unwrap();
        let mut server = ServerConfig::builder_with_provider(ring())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![identity.cert.clone()],
                PrivateKeyDer::Pkcs8(identity.key.clone_key()),
            )
            .unwrap();
        server.alpn_protocols = vec![ALPN_H2.to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(server));
        handshake(acceptor, pinned_client(&identity, true)).await;
    }

    #[test]
    fn validity_covers_now_with_backdating() {
        let now = SystemTime::now();
        let params = certificate_params(now).unwrap();
        let now = rcgen::date_time_ymd(1970, 1, 1) + now.duration_since(UNIX_EPOCH).unwrap();
        assert!(params.not_before < now);
        assert!(params.not_before + BACKDATE > now - Duration::from_secs(5));
        assert!(params.not_after > now + Duration::from_secs(365 * 24 * 60 * 60));
    }
}
