//! A rustls client configuration that trusts one CA only, for clients other than the
//! SDK (reqwest baselines, raw requests) talking to a TLS mock.
#![allow(dead_code)]

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;

/// Trusts exactly the CA in `ca_pem`, with ring as the crypto provider.
pub fn trusting(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable CA");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
