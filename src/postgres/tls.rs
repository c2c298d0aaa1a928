//! TLS as libpq's `sslmode` describes it: `disable`; `prefer` (the default) and `require`
//! encrypt without checking whom they talk to; `verify-ca` and `verify-full` also check the
//! server's certificate (and name) against the Mozilla roots, or against `sslrootcert`.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, so the two verifying
//! modes and `sslrootcert` are taken out of the URL here and become the connector's settings.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// The URL tokio-postgres can read, and the connector that does what its `sslmode` asked.
pub(super) fn split(url: &str) -> Result<(String, MakeRustlsConnect), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut verify = false;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match (key, value) {
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = true;
                kept.push("sslmode=require".to_owned());
            }
            ("sslrootcert", path) => {
                root_cert = Some(
                    percent_encoding::percent_decode_str(path)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            }
            _ => kept.push(pair.to_owned()),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(StoreError::new)?;
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        match &root_cert {
            Some(path) => {
                for certificate in CertificateDer::pem_file_iter(path)
                    .map_err(|error| StoreError::new(format!("sslrootcert {path}: {error}")))?
                {
                    let certificate = certificate
                        .map_err(|error| StoreError::new(format!("sslrootcert {path}: {error}")))?;
                    roots
                        .add(certificate)
                        .map_err(|error| StoreError::new(format!("sslrootcert {path}: {error}")))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    Ok((url, MakeRustlsConnect::new(config)))
}

/// `prefer` and `require`: the connection is encrypted and the handshake's signatures are
/// checked, but the certificate may be anyone's, as with libpq.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_modes_and_the_root_certificate_leave_the_url() {
        let (url, _) = split("postgres://u@h/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        let (url, _) = split("postgres://u@h/db?sslmode=prefer").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=prefer");
        let (url, _) = split("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        let missing = split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem");
        let Err(error) = missing else {
            panic!("a missing root certificate file is an error")
        };
        assert!(error.to_string().contains("/no/such.pem"), "{error}");
    }
}
