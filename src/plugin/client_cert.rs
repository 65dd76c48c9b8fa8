//! AutoMTLS, client side of the check: only the process holding the
//! certificate Terraform passed in `PLUGIN_CLIENT_CERT` may talk to us.
//!
//! go-plugin's server trusts exactly that certificate (it is self-signed and
//! marked as a CA). The same here: the client must present that very
//! certificate (compared byte for byte) and prove it holds its key with a
//! valid TLS signature. Terraform's key is ECDSA P-521, which ring cannot
//! verify, so P-521 signatures are checked with the pure-Rust `p521` crate;
//! every other scheme with ring's verifiers.

use std::fmt;
use std::sync::Arc;

use p521::ecdsa::signature::Verifier as _;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{
    alg_id, AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// `PLUGIN_CLIENT_CERT` could not be read as a PEM certificate.
#[derive(Debug)]
pub struct BadClientCertificate(String);

impl fmt::Display for BadClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PLUGIN_CLIENT_CERT is not a PEM certificate: {}", self.0)
    }
}

impl std::error::Error for BadClientCertificate {}

/// Accepts exactly one client certificate: Terraform's.
#[derive(Debug)]
pub struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedClientCert {
    pub fn from_pem(pem: &str) -> Result<Arc<Self>, BadClientCertificate> {
        let pinned = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| BadClientCertificate(format!("{e:?}")))?;
        Ok(Self::from_der(pinned))
    }

    pub fn from_der(pinned: CertificateDer<'static>) -> Arc<Self> {
        Arc::new(Self {
            pinned,
            algorithms: algorithms(),
        })
    }
}

/// ring's verifiers plus ECDSA P-521 with SHA-512 (the one Terraform uses).
fn algorithms() -> WebPkiSupportedAlgorithms {
    let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    static P521: &[&dyn SignatureVerificationAlgorithm] = &[&EcdsaP521Sha512];
    let mut all: Vec<&'static dyn SignatureVerificationAlgorithm> = ring.all.to_vec();
    all.push(&EcdsaP521Sha512);
    let mut mapping = ring.mapping.to_vec();
    mapping.push((SignatureScheme::ECDSA_NISTP521_SHA512, P521));
    // `WebPkiSupportedAlgorithms` holds static slices; this is built once per process.
    WebPkiSupportedAlgorithms {
        all: Vec::leak(all),
        mapping: Vec::leak(mapping),
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: Go's client then offers its one certificate as long as
        // its key fits one of `supported_verify_schemes`.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            log::warn!("refused a client whose certificate is not the one Terraform passed");
            Err(Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// ECDSA over P-521 with SHA-512, as webpki sees a signature algorithm.
#[derive(Debug)]
struct EcdsaP521Sha512;

impl SignatureVerificationAlgorithm for EcdsaP521Sha512 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = p521::ecdsa::VerifyingKey::from_sec1_bytes(public_key).map_err(|_| InvalidSignature)?;
        let signature = p521::ecdsa::DerSignature::try_from(signature).map_err(|_| InvalidSignature)?;
        key.verify(message, &signature).map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_P521
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::ECDSA_SHA512
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p521::ecdsa::signature::Signer as _;

    /// A P-521 signature made with the `p521` crate verifies through the
    /// webpki-shaped algorithm; a flipped message bit does not.
    #[test]
    fn p521_sha512_signatures_verify() {
        let signing = p521::ecdsa::SigningKey::from_slice(&[1u8; 66]).unwrap();
        let public = p521::ecdsa::VerifyingKey::from(&signing).to_sec1_point(false);
        let signature: p521::ecdsa::Signature = signing.sign(b"terraform");
        let der = signature.to_der();
        let alg = EcdsaP521Sha512;
        assert!(alg.verify_signature(public.as_bytes(), b"terraform", der.as_bytes()).is_ok());
        assert!(alg.verify_signature(public.as_bytes(), b"terraforn", der.as_bytes()).is_err());
        assert!(algorithms().supported_schemes().contains(&SignatureScheme::ECDSA_NISTP521_SHA512));
    }

    #[test]
    fn only_the_pinned_certificate_is_accepted() {
        let pinned = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let verifier = PinnedClientCert::from_pem(&pinned.cert.pem()).unwrap();
        let now = UnixTime::now();
        assert!(verifier.verify_client_cert(pinned.cert.der(), &[], now).is_ok());
        assert!(verifier.verify_client_cert(other.cert.der(), &[], now).is_err());
        assert!(verifier.client_auth_mandatory());
        assert!(PinnedClientCert::from_pem("not a certificate").is_err());
    }
}
