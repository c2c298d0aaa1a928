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
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// The URL's settings that TLS depends on: each may be given once. The driver keeps the last
/// of two, which would let a later `sslmode=disable` quietly undo an earlier `verify-full`.
const GIVEN_ONCE: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "channel_binding",
];

/// The connection settings for `url` and the connector that does what its `sslmode` asked.
/// Refused when the driver would read another `sslmode` from the URL than the one given (a
/// stray `@` or `?` in the URL can move the query into the user name, say).
pub(super) fn connection(
    url: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    let (url, tls, mode) = split(url)?;
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|error| StoreError::new(format!("the database URL: {error}")))?;
    if config.get_ssl_mode() != mode {
        return Err(StoreError::new(
            "the database URL: its sslmode is not read as given; percent-encode any '@', '?', \
             '&' or '=' in its user, password or values",
        ));
    }
    Ok((config, tls))
}

/// The URL tokio-postgres can read, the connector that does what its `sslmode` asked, and the
/// mode tokio-postgres must read from that URL.
fn split(url: &str) -> Result<(String, MakeRustlsConnect, SslMode), StoreError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut verify = false;
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    let mut given = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Names and values as the driver reads them: percent-decoded.
        let (key, value) = (decode(key), decode(value));
        if GIVEN_ONCE.contains(&&*key) {
            if given.contains(&key) {
                return Err(StoreError::new(format!(
                    "the database URL gives {key} more than once"
                )));
            }
            given.push(key.clone());
        }
        match (&*key, &*value) {
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = true;
                mode = SslMode::Require;
                kept.push("sslmode=require".to_owned());
            }
            ("sslrootcert", path) => root_cert = Some(path.to_owned()),
            ("sslmode", other) => {
                mode = match other {
                    "disable" => SslMode::Disable,
                    "require" => SslMode::Require,
                    // The driver refuses anything else.
                    _ => SslMode::Prefer,
                };
                kept.push(pair.to_owned());
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
    Ok((url, MakeRustlsConnect::new(config), mode))
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
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
        let (url, _, _) =
            split("postgres://u@h/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        let (url, _, _) = split("postgres://u@h/db?sslmode=prefer").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=prefer");
        let (url, _, _) = split("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        let missing = split("postgres://u@h/db?sslmode=verify-ca&sslrootcert=%2Fno%2Fsuch.pem");
        let Err(error) = missing else {
            panic!("a missing root certificate file is an error")
        };
        assert!(error.to_string().contains("/no/such.pem"), "{error}");
    }

    #[test]
    fn a_tls_setting_given_twice_is_refused() {
        for url in [
            "postgres://u@h/db?sslmode=verify-full&sslmode=disable",
            "postgres://u@h/db?sslmode=require&sslmode=require",
            // The driver decodes names as it reads them: so is the check.
            "postgres://u@h/db?sslmode=verify-full&ssl%6Dode=disable",
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=a.pem&sslrootcert=b.pem",
            "postgres://u@h/db?channel_binding=require&channel_binding=disable",
            "postgres://u@h/db?sslnegotiation=direct&sslnegotiation=postgres",
        ] {
            let Err(error) = split(url) else {
                panic!("{url} is accepted")
            };
            assert!(error.to_string().contains("more than once"), "{error}");
        }
        // Settings that may repeat still do.
        connection("postgres://u@h/db?host=a&host=b&sslmode=require").unwrap();
    }

    #[test]
    fn a_url_the_driver_reads_with_another_mode_is_refused() {
        // The '@' in the value makes the driver read all before it as the user name.
        let Err(error) = connection("postgres://h/db?sslmode=verify-full&application_name=a@b")
        else {
            panic!("accepted")
        };
        assert!(error.to_string().contains("sslmode"), "{error}");
        for url in [
            "postgres://u@h/db?sslmode=verify-full",
            "postgres://u@h/db?sslmode=disable",
            "postgres://u@h/db",
            "postgres://u:p%40ss@h/db?sslmode=require&application_name=a%40b",
        ] {
            connection(url).unwrap();
        }
    }

    #[test]
    fn an_encoded_verifying_mode_is_read_as_the_driver_reads_it() {
        let (url, _, _) = split("postgres://u@h/db?ssl%6Dode=verify%2Dfull").unwrap();
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
    }
}
