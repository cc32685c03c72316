//! The HSM key source against plaintext keys, in the same run:
//! - loading a keyring of 10 data keys from a plaintext file, against loading it wrapped
//!   by a SoftHSM2 KEK (10 unwraps in the token), and against opening the HSM session
//!   (module, token, login, KEK) and then loading;
//! - seal + open with a keyring loaded from the HSM, against one loaded from a plaintext
//!   file and against raw `aes-gcm`: the HSM is not on the seal path, so the first two
//!   must match.
//!
//! `bash .ci/test --bench hsm` (SoftHSM2 needs `SOFTHSM2_CONF`; `.ci/test` makes one),
//! or `SOFTHSM2_CONF=... cargo bench -p chart-e2e --features pkcs11 --bench hsm`.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

#[path = "../tests/support/softhsm.rs"]
mod softhsm;

use std::hint::black_box;
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use chart_auth::vault::{KeyId, KeySource, Keyring, RecordIdentity};
use criterion::{Criterion, criterion_group, criterion_main};

const KEYS: u32 = 10;

fn keyring_load(c: &mut Criterion) {
    let token = softhsm::fresh_token();
    let hsm: Arc<dyn KeySource> = Arc::new(token.kek("bench-kek"));
    let dir = tempfile::tempdir().unwrap();
    let (plain, wrapped) = (dir.path().join("plain.txt"), dir.path().join("wrapped.txt"));
    let mut ring = Keyring::generate();
    for _ in 1..KEYS {
        ring.add_key().unwrap();
    }
    ring.save(&plain).unwrap();
    ring.set_key_source(hsm.clone());
    ring.save(&wrapped).unwrap();

    let mut group = c.benchmark_group("keyring load (10 keys)");
    group.bench_function("plaintext file", |b| {
        b.iter(|| black_box(Keyring::load(&plain).unwrap()))
    });
    group.bench_function("wrapped, SoftHSM2 session open", |b| {
        b.iter(|| black_box(Keyring::load_with(&wrapped, hsm.clone()).unwrap()))
    });
    group.bench_function("wrapped, SoftHSM2 login + load", |b| {
        b.iter(|| {
            let source = Arc::new(token.config("bench-kek").open().unwrap());
            black_box(Keyring::load_with(&wrapped, source).unwrap())
        })
    });
    group.finish();

    let from_hsm = Keyring::load_with(&wrapped, hsm).unwrap();
    let from_file = Keyring::load(&plain).unwrap();
    seal_open(c, &from_file, &from_hsm);
}

fn seal_open(c: &mut Criterion, from_file: &Keyring, from_hsm: &Keyring) {
    let raw = Aes256Gcm::new_from_slice(&[0x42; 32]).unwrap();
    let id = RecordIdentity {
        client_id: "client-0123",
        owner: b"user-4f1c9a2e",
        account_id: "8d3c1a7e-5b8f-4c5e-9a43-1f2e3d4c5b6a",
        provider_id: "turbotax",
    };
    let payload = [0x5a; 36];
    let mut group = c.benchmark_group("seal+open 36 B");
    group.bench_function("raw aes-gcm", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            getrandom::fill(&mut nonce).unwrap();
            let mut buf = payload;
            let tag = raw
                .encrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into())
                .unwrap();
            raw.decrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into(), &tag)
                .unwrap();
            black_box(buf)
        })
    });
    for (name, ring) in [
        ("keyring from file", from_file),
        ("keyring from HSM", from_hsm),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let sealed = ring.seal(&id, &payload).unwrap();
                black_box(ring.unseal(&id, &sealed).unwrap())
            })
        });
    }
    group.finish();
    assert_eq!(from_hsm.primary(), KeyId(1));
}

criterion_group!(benches, keyring_load);
criterion_main!(benches);
