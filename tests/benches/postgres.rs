//! `PostgresStore` put and get against a hand-written tokio-postgres upsert and select
//! of the same bytes, on the same server, in the same run:
//!
//! ```sh
//! cargo bench -p chart-e2e --features postgres --bench postgres
//! ```
//!
//! The baseline is the best plain code: one connection, statements prepared once. The
//! store adds its pool checkout, its version check and the decoding of a record.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use chart_auth::vault::{Expect, PostgresPool, PostgresStore, StoredRecord, TokenStore};
use criterion::{Criterion, criterion_group, criterion_main};
use tokio_postgres::NoTls;

fn admin_url() -> String {
    std::env::var("CHART_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls).await.unwrap();
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let name = format!("chart_bench_{}", std::process::id());
    rt.block_on(admin(&format!("CREATE DATABASE {name}")));
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    let store = rt.block_on(async {
        let store = PostgresStore::new(&PostgresPool::connect(&url).unwrap());
        store.migrate().await.unwrap();
        store
    });
    // The same shape of table, for the baseline.
    let (raw, conn) = rt.block_on(tokio_postgres::connect(&url, NoTls)).unwrap();
    rt.spawn(conn);
    rt.block_on(raw.batch_execute(
        r#"CREATE TABLE raw (account_id TEXT COLLATE "C" PRIMARY KEY, version BIGINT NOT NULL,
           client_id TEXT NOT NULL, provider_id TEXT NOT NULL, stored_at BIGINT NOT NULL,
           sealed BYTEA NOT NULL)"#,
    ))
    .unwrap();
    let upsert = rt
        .block_on(raw.prepare(
            "INSERT INTO raw VALUES ($1, 1, $2, $3, $4, $5) ON CONFLICT (account_id) DO UPDATE
             SET version = raw.version + 1, client_id = EXCLUDED.client_id,
                 provider_id = EXCLUDED.provider_id, stored_at = EXCLUDED.stored_at,
                 sealed = EXCLUDED.sealed RETURNING version",
        ))
        .unwrap();
    let select = rt
        .block_on(raw.prepare(
            "SELECT account_id, version, client_id, provider_id, stored_at, sealed
             FROM raw WHERE account_id = $1",
        ))
        .unwrap();
    // A sealed token of a typical size: 1 + 4 + 12 + 36 + 16 bytes.
    let record = StoredRecord {
        version: 0,
        client_id: "bench-client".into(),
        owner: b"user-bench".to_vec(),
        account_id: "acct-bench".into(),
        provider_id: "turbotax".into(),
        stored_at: 1_700_000_000,
        sealed: vec![0xa5; 69],
    };
    let stored_at = record.stored_at as i64;

    let mut group = c.benchmark_group("postgres");
    // Interleaved: baseline, store, baseline, store, so drift hits both alike.
    group.bench_function("put/raw upsert", |b| {
        b.iter(|| {
            rt.block_on(raw.query_one(
                &upsert,
                &[
                    &record.account_id,
                    &record.client_id,
                    &record.provider_id,
                    &stored_at,
                    &record.sealed,
                ],
            ))
            .unwrap()
        })
    });
    group.bench_function("put/PostgresStore", |b| {
        b.iter(|| black_box(rt.block_on(store.put(&record, Expect::Any)).unwrap()))
    });
    group.bench_function("get/raw select", |b| {
        b.iter(|| {
            let row = rt
                .block_on(raw.query_opt(&select, &[&record.account_id]))
                .unwrap()
                .unwrap();
            black_box(row.get::<_, Vec<u8>>(5))
        })
    });
    group.bench_function("get/PostgresStore", |b| {
        b.iter(|| black_box(rt.block_on(store.get(&key("acct-bench"))).unwrap()))
    });
    group.finish();
    drop(raw);
    rt.block_on(admin(&format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )));
}

criterion_group!(benches, bench);
criterion_main!(benches);

fn key(account: &str) -> chart_auth::vault::RecordKey {
    chart_auth::vault::RecordKey::new(b"user-bench", account)
}
