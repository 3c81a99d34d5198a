//! TLS for the WebSocket transport ([`WebSocketTls`]): a certificate to serve `/tls/ws` with,
//! and certificate authorities to trust when dialling one.
//!
//! TLS here is camouflage, not authentication: Noise inside it authenticates the peer as on
//! every other transport. What TLS adds is that the connection looks like any HTTPS site to a
//! network that inspects or blocks everything else.

use std::fmt;

use libp2p::websocket::tls;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::error::NetError;

/// TLS settings of the WebSocket transport. The default serves no `/tls/ws` and trusts the
/// web's certificate authorities (Mozilla's list, built in) when dialling one.
#[derive(Default)]
pub struct WebSocketTls {
    /// Certificate chain (leaf first) and its private key, served on `/tls/ws` listeners.
    server: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Authorities trusted besides the built-in ones (a community's own, or a self-signed
    /// certificate).
    trust: Vec<CertificateDer<'static>>,
}

impl Clone for WebSocketTls {
    fn clone(&self) -> Self {
        WebSocketTls {
            server: self
                .server
                .as_ref()
                .map(|(certs, key)| (certs.clone(), key.clone_key())),
            trust: self.trust.clone(),
        }
    }
}

impl fmt::Debug for WebSocketTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketTls")
            .field("serves", &self.serves())
            .field("extra_trust", &self.trust.len())
            .finish()
    }
}

fn pem_error(what: &str, e: rustls_pki_types::pem::Error) -> NetError {
    let why = match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM section of that kind found".into(),
        other => other.to_string(),
    };
    NetError::Tls(format!("{what}: {why}"))
}

impl WebSocketTls {
    /// Serves `/tls/ws` with the certificate chain `cert_pem` (PEM `CERTIFICATE` sections,
    /// the leaf first, then intermediates) and its private key `key_pem` (PEM PKCS#8, PKCS#1
    /// or SEC1). Checks that the key belongs to the certificate.
    pub fn serve_pem(&mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), NetError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("the certificate file", e))?;
        if certs.is_empty() {
            return Err(NetError::Tls(
                "the certificate file has no PEM CERTIFICATE section".into(),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem_error("the key file", e))?;
        let server = (certs, key);
        // Fails now (key not matching, unsupported algorithm) rather than at listen time.
        Self::server_config(&server)?;
        self.server = Some(server);
        Ok(())
    }

    /// Trusts every certificate in `pem` (PEM `CERTIFICATE` sections) as an authority when
    /// dialling `/tls/ws`. Returns how many were added.
    pub fn trust_pem(&mut self, pem: &[u8]) -> Result<usize, NetError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("the trusted certificate file", e))?;
        if certs.is_empty() {
            return Err(NetError::Tls(
                "the trusted certificate file has no PEM CERTIFICATE section".into(),
            ));
        }
        let n = certs.len();
        self.trust.extend(certs);
        // Same check as when the transport is built, so a bad one is reported here.
        self.libp2p_config()?;
        Ok(n)
    }

    /// Whether a certificate is set, so `/tls/ws` can be listened on.
    pub fn serves(&self) -> bool {
        self.server.is_some()
    }

    fn server_config(
        (certs, key): &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    ) -> Result<tls::Builder, NetError> {
        // `tls::PrivateKey::new` panics on bytes it cannot classify: classify them first.
        PrivateKeyDer::try_from(key.secret_der())
            .map_err(|e| NetError::Tls(format!("the key file: {e}")))?;
        let mut builder = tls::Config::builder();
        builder
            .server(
                tls::PrivateKey::new(key.secret_der().to_vec()),
                certs.iter().map(|c| tls::Certificate::new(c.to_vec())),
            )
            .map_err(|e| NetError::Tls(format!("the certificate and key: {e}")))?;
        Ok(builder)
    }

    /// The configuration libp2p's WebSocket transport takes.
    pub(crate) fn libp2p_config(&self) -> Result<tls::Config, NetError> {
        let mut builder = match &self.server {
            Some(server) => Self::server_config(server)?,
            None => tls::Config::builder(),
        };
        for cert in &self.trust {
            builder
                .add_trust(&tls::Certificate::new(cert.to_vec()))
                .map_err(|e| NetError::Tls(format!("a trusted certificate: {e}")))?;
        }
        Ok(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a_certificate() -> (String, String) {
        let c = ruang_testkit::tls::certificate(&["localhost"]).unwrap();
        (c.cert, c.key)
    }

    #[test]
    fn serves_a_matching_certificate_and_key() {
        let (cert, key) = a_certificate();
        let mut tls = WebSocketTls::default();
        assert!(!tls.serves());
        tls.serve_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(tls.serves());
        assert_eq!(tls.trust_pem(cert.as_bytes()).unwrap(), 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let (cert, key) = a_certificate();
        let (_, other_key) = a_certificate();
        let mut tls = WebSocketTls::default();
        let cases: [(&str, &str, &str); 5] = [
            ("", &key, "no PEM CERTIFICATE"),
            (&cert, "", "the key file"),
            (&key, &cert, "no PEM CERTIFICATE"),
            (&cert, &other_key, "certificate and key"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &key,
                "certificate and key",
            ),
        ];
        for (cert, key, says) in cases {
            let err = tls.serve_pem(cert.as_bytes(), key.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(says), "{err} (expected {says:?})");
        }
        assert!(!tls.serves());
        let junk_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(tls.serve_pem(cert.as_bytes(), junk_key.as_bytes()).is_err());
        assert!(tls.trust_pem(b"not pem").is_err());
    }
}
