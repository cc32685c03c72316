//! A record file as `FileStore` reads it, through the vault: decoding, the identity
//! checks, metadata and unsealing never panic, and a record unseals only to the token
//! that was sealed into it.
//!
//! Valid records are reachable: the `Sealed` arm seals a token with the fuzz key, then
//! applies the input's byte edits to the record's JSON before it is read back.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chart_auth::fuzzing::decode_record;
use chart_auth::vault::{Expect, KeyId, Keyring, MemoryStore, RecordKey, TokenStore, Vault};
use chart_auth::{AccessToken, Owner, ProviderId};
use libfuzzer_sys::fuzz_target;

const CLIENT: &str = "fuzz-client";
const KEY: [u8; 32] = [0x5a; 32];
const OWNER: &str = "fuzz-owner";

#[derive(Arbitrary, Debug)]
enum Input<'a> {
    Raw(&'a [u8]),
    Sealed {
        account: &'a str,
        provider: &'a str,
        token: &'a str,
        edits: Vec<(u16, u8)>,
    },
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

fn vault() -> Vault<MemoryStore> {
    Vault::new(
        CLIENT,
        Keyring::from_key(KeyId(1), &KEY).unwrap(),
        MemoryStore::default(),
    )
}

/// Reads a record file's bytes the way the vault would; gives the unsealed token.
async fn read_back(bytes: &[u8]) -> Option<String> {
    let record = decode_record(bytes).ok()?;
    let vault = vault();
    vault.store().put(&record, Expect::Any).await.ok()?;
    let account = record.account_id.clone();
    let _ = vault.check_record(&record.key()).await;
    let _ = vault.list_all().await;
    // Only the owner the record is filed under can read it; another finds nothing.
    let someone = Owner::new("someone-else").unwrap();
    assert!(vault.unseal(&someone, &account).await.is_err() || record.owner == someone.as_bytes());
    let owner = Owner::new(&record.owner).ok()?;
    let _ = vault.get(&owner, &account).await;
    let _ = vault.list(&owner).await;
    let _ = vault.get(&owner, "someone-else").await;
    vault
        .unseal(&owner, &account)
        .await
        .ok()
        .map(|t| t.expose_secret().to_owned())
}

fuzz_target!(|input: Input<'_>| {
    runtime().block_on(async {
        match input {
            Input::Raw(bytes) => {
                // Nothing forged opens: the fuzzer cannot compute a tag under KEY.
                let _ = read_back(bytes).await;
            }
            Input::Sealed {
                account,
                provider,
                token,
                edits,
            } => {
                if account.is_empty() || token.is_empty() {
                    return;
                }
                let vault = vault();
                let owner = Owner::new(OWNER).unwrap();
                vault
                    .put(
                        &owner,
                        account,
                        &ProviderId::from(provider),
                        &AccessToken::new(token),
                    )
                    .await
                    .unwrap();
                let key = RecordKey::new(OWNER.as_bytes(), account);
                let record = vault.store().get(&key).await.unwrap().unwrap();
                let mut json = serde_json::to_vec(&record).unwrap();
                let untouched = json.clone();
                let len = json.len();
                for (at, xor) in edits {
                    json[usize::from(at) % len] ^= xor;
                }
                match read_back(&json).await {
                    Some(opened) => assert_eq!(opened, token, "a record unsealed to another token"),
                    None => assert_ne!(json, untouched, "an untouched record did not unseal"),
                }
            }
        }
    });
});
