//! TLS for PostgreSQL connections with libpq's sslmode semantics:
//! `prefer`/`require` encrypt without verifying (as libpq does without a root
//! certificate), `verify-ca` checks the chain, `verify-full` also the host name.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{ConnectionSettings, SqlError, SslMode};

pub fn connector(settings: &ConnectionSettings) -> Result<MakeRustlsConnect, SqlError> {
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    // As libpq: `require` with a root certificate verifies the chain like `verify-ca`.
    let verify_chain = matches!(settings.sslmode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (settings.sslmode == SslMode::Require && settings.sslrootcert.is_some());
    let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
        let root_path = settings.sslrootcert.as_deref().ok_or_else(|| SqlError {
            message: format!("sslmode {} needs sslrootcert", settings.sslmode.name()),
            code: None,
        })?;
        let mut roots = RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(root_path).map_err(|e| file_error(root_path, e))?
        {
            roots
                .add(cert.map_err(|e| file_error(root_path, e))?)
                .map_err(tls_error)?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| SqlError {
                message: format!("TLS setup: {e}"),
                code: None,
            })?;
        Arc::new(ChainVerifier {
            inner: webpki,
            check_name: settings.sslmode == SslMode::VerifyFull,
        })
    } else {
        Arc::new(EncryptOnly(provider))
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&settings.sslcert, &settings.sslkey) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(SqlError {
                message: "sslcert and sslkey must be given together".into(),
                code: None,
            })
        }
        (Some(cert_path), Some(key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| file_error(cert_path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(cert_path, e))?;
            let key =
                PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_error(key_path, e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(tls_error)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn tls_error(e: TlsError) -> SqlError {
    SqlError {
        message: format!("TLS setup: {e}"),
        code: None,
    }
}

fn file_error(path: &str, e: impl std::fmt::Display) -> SqlError {
    SqlError {
        message: format!("cannot read {path}: {e}"),
        code: None,
    }
}

/// `verify-ca` / `verify-full`: the chain must lead to sslrootcert; the host
/// name is checked only for `verify-full`.
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` / `require`: encryption without identity checks, as libpq does
/// without a root certificate. The handshake signature is not checked either:
/// against an unauthenticated certificate it proves nothing, and servers such
/// as Citus' auto-configured ones present X.509 v1 certificates webpki rejects.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
