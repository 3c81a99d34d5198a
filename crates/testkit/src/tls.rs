//! Test certificates: an authority and a certificate it signed, for TLS tests (WebSocket
//! inside TLS) that must not depend on the web's authorities.

/// A certificate for `names` (DNS names or IP addresses) signed by a fresh authority, all PEM.
pub struct Certificate {
    /// The certificate (leaf).
    pub cert: String,
    /// Its private key.
    pub key: String,
    /// The authority that signed it (to trust).
    pub authority: String,
}

/// Makes a [`Certificate`] for `names`.
pub fn certificate(names: &[&str]) -> Result<Certificate, rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "ruang test authority");
    let ca = ca.self_signed(&ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)?.signed_by(&key, &ca, &ca_key)?;
    Ok(Certificate {
        cert: cert.pem(),
        key: key.serialize_pem(),
        authority: ca.pem(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_pem_of_each_part() {
        let c = super::certificate(&["localhost", "127.0.0.1"]).unwrap();
        assert!(c.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.authority.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(c.key.contains("PRIVATE KEY"));
        assert_ne!(c.cert, c.authority);
    }
}
