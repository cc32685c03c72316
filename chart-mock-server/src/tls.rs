//! TLS for the mock: a CA and a `localhost`/`127.0.0.1`/`::1` leaf, made at start with
//! rcgen.
//!
//! Frontend developers install the CA in a browser or trust store, so it can vouch for
//! nothing else: it is name-constrained to `localhost` (and its subdomains), 127.0.0.1
//! and ::1, may sign no further CA (path length 0), and is valid for
//! [`CA_VALIDITY_DAYS`] from an hour before the mock started.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CidrSubnet, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A generated CA and the server configuration of a leaf it signed.
pub(crate) struct TlsMaterial {
    /// The CA certificate, PEM; clients trust this.
    pub ca_pem: String,
    /// The server configuration (ALPN h2 and http/1.1).
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// How long the generated CA and leaf are valid: a month, so that a CA trusted once
/// and forgotten stops being trusted on its own.
pub const CA_VALIDITY_DAYS: u64 = 30;

/// Generates a fresh CA and leaf.
pub(crate) fn generate() -> Result<TlsMaterial, String> {
    let err = |e: rcgen::Error| format!("certificate generation failed: {e}");
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let not_before = epoch + since_epoch.saturating_sub(Duration::from_secs(3600));
    let not_after = epoch + since_epoch + Duration::from_secs(CA_VALIDITY_DAYS * 86_400);
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.name_constraints = Some(NameConstraints {
        permitted_subtrees: [GeneralSubtree::DnsName("localhost".into())]
            .into_iter()
            .chain(loopback.iter().map(|ip| {
                let full = if ip.is_ipv4() { 32 } else { 128 };
                GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, full))
            }))
            .collect(),
        excluded_subtrees: Vec::new(),
    });
    (ca_params.not_before, ca_params.not_after) = (not_before, not_after);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "chart-mock-server test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(err)?).map_err(err)?;

    let mut leaf_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    leaf_params.subject_alt_names = [SanType::DnsName("localhost".try_into().map_err(err)?)]
        .into_iter()
        .chain(loopback.into_iter().map(SanType::IpAddress))
        .collect();
    (leaf_params.not_before, leaf_params.not_after) = (not_before, not_after);
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca).map_err(err)?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        ca_pem: ca.pem(),
        server_config: Arc::new(config),
    })
}
