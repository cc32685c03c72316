//! The vault against its baselines, in the same run:
//! - seal + open against raw `aes-gcm` encrypt + decrypt of the same payload with the
//!   same key (and a fresh random nonce each time, as any real use needs);
//! - `FileStore` put and get against a plain durable write (temp file, fsync, rename,
//!   directory fsync) and a plain read of the same bytes.
//!
//! `cargo bench -p chart-e2e --bench vault`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use chart_auth::vault::{FileStore, KeyId, Keyring, RecordIdentity, TokenStore, Vault};
use chart_auth::{AccessToken, ProviderId};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const KEY: [u8; 32] = [0x42; 32];

fn seal_open(c: &mut Criterion) {
    let ring = Keyring::from_key(KeyId(1), &KEY).unwrap();
    let raw = Aes256Gcm::new_from_slice(&KEY).unwrap();
    let id = RecordIdentity {
        client_id: "client-0123",
        owner: b"user-4f1c9a2e",
        account_id: "8d3c1a7e-5b8f-4c5e-9a43-1f2e3d4c5b6a",
        provider_id: "turbotax",
    };
    let mut group = c.benchmark_group("seal+open");
    for size in [36usize, 1024] {
        let payload = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("raw aes-gcm", size), &payload, |b, p| {
            b.iter(|| {
                let mut nonce = [0u8; 12];
                getrandom::fill(&mut nonce).unwrap();
                let mut buf = p.clone();
                let tag = raw
                    .encrypt_inout_detached(&Nonce::from(nonce), b"", buf.as_mut_slice().into())
                    .unwrap();
                raw.decrypt_inout_detached(
                    &Nonce::from(nonce),
                    b"",
                    buf.as_mut_slice().into(),
                    &tag,
                )
                .unwrap();
                black_box(buf)
            })
        });
        group.bench_with_input(BenchmarkId::new("vault", size), &payload, |b, p| {
            b.iter(|| {
                let sealed = ring.seal(&id, p).unwrap();
                black_box(ring.unseal(&id, &sealed).unwrap())
            })
        });
    }
    group.finish();
}

fn plain_durable_write(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".plain-{name}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

fn file_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(
        std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "../target".into()),
    )
    .unwrap();
    let store = FileStore::open(dir.path().join("store")).unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let vault = Vault::new(
        "client",
        Keyring::from_key(KeyId(1), &KEY).unwrap(),
        store.clone(),
    );
    let token = AccessToken::new("4f1c9a2e-7b3d-4e8f-a1c2-3d4e5f6a7b8c");
    rt.block_on(vault.put(&owner(), "acct", &ProviderId::TurboTax, &token))
        .unwrap();
    let record = rt.block_on(store.get(&key("acct"))).unwrap().unwrap();
    let bytes = std::fs::read(store.record_path(&key("acct"))).unwrap();

    let mut group = c.benchmark_group("durable write");
    group.sample_size(30);
    group.bench_function("plain write+fsync+rename+dir fsync", |b| {
        b.iter(|| plain_durable_write(&plain, "acct", &bytes))
    });
    group.bench_function("FileStore put", |b| {
        b.iter(|| {
            rt.block_on(store.put(&record, chart_auth::vault::Expect::Any))
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("read");
    group.bench_function("plain read", |b| {
        b.iter(|| black_box(std::fs::read(plain.join("acct")).unwrap()))
    });
    group.bench_function("FileStore get", |b| {
        b.iter(|| black_box(rt.block_on(store.get(&key("acct"))).unwrap()))
    });
    group.bench_function("Vault open (get + decrypt)", |b| {
        b.iter(|| black_box(rt.block_on(vault.unseal(&owner(), "acct")).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, seal_open, file_store);
criterion_main!(benches);

/// The user whose accounts these connections are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}

fn key(account: &str) -> chart_auth::vault::RecordKey {
    chart_auth::vault::RecordKey::new(owner().as_bytes(), account)
}
