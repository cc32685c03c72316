//! The frozen golden blobs: sealed once, they must open forever.
#![allow(dead_code)]

use chart_auth::vault::{KeyId, Keyring, RecordIdentity};

pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The identity of the v1 golden blobs: no owner (v1 binds none).
pub const ID: RecordIdentity<'static> = RecordIdentity {
    client_id: "golden-client",
    owner: b"",
    account_id: "golden-account",
    provider_id: "turbotax",
};

/// Sealed once, with keys 7 (0x11 × 32) and 8 (0x22 × 32). They must open forever.
pub const GOLDEN_7: &str = "01000000077288097bbe3a56db992cd45964acfff7c60d5ac7f0918ad188a7f8851b03a9e2421b9708b30278beca10ef542eece34368117929";
pub const GOLDEN_8: &str = "0100000008433ce271aa4d17904adeb701bab92f7cc1f87003ae482ccd96e62b69745f9395702c26fbb339b5cd90d28bcb6d3af6b4926dc6f7";

/// Format v2 (XAES-256-GCM, owner bound), sealed once under the same keys for
/// [`ID_V2`]. They must open forever. Checked once against an independent XAES
/// implementation (OpenSSL's AES through Python's `cryptography`): `tests/tests/data/golden_v2.py`.
pub const GOLDEN_V2_7: &str = "0200000007652af2e4d072146b17abbc6143161784911a5bbe2d1c1a84b24a81ea37306c95f74b3e113bdb1ebd5b3f97d231caf49e379cdc2f04dd6420627144a5eeecce773a56ff";
pub const GOLDEN_V2_8: &str = "0200000008569163a42ebba812ee96d7da57eeb8cf86a7233e76f255b90a18b46fcc8220a6a0d8c09332a546b81a3ea16f6fde6f55a541188122f613944d9cb125a30db3eb21665a";

/// The identity of the v2 golden blobs.
pub const ID_V2: RecordIdentity<'static> = RecordIdentity {
    owner: b"golden-owner",
    ..ID
};

pub fn golden_ring() -> Keyring {
    let mut ring = Keyring::from_key(KeyId(7), &[0x11; 32]).unwrap();
    ring.add_key_bytes(KeyId(8), &[0x22; 32]).unwrap();
    ring
}
