//! The sealed-record decoder and `open`: any blob gives a typed error and no panic;
//! nothing but a real seal opens; seal-then-open round-trips any plaintext.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chart_auth::vault::{KeyId, Keyring, RecordIdentity, sealed_key_id};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    blob: &'a [u8],
    plaintext: &'a [u8],
    owner: &'a [u8],
    account: &'a str,
    flip: Option<(u16, u8)>,
}

fn ring() -> &'static Keyring {
    static R: OnceLock<Keyring> = OnceLock::new();
    R.get_or_init(|| {
        let mut ring = Keyring::from_key(KeyId(1), &[0x11; 32]).unwrap();
        ring.add_key_bytes(KeyId(2), &[0x22; 32]).unwrap();
        ring
    })
}

fuzz_target!(|input: Input<'_>| {
    let id = RecordIdentity {
        client_id: "c",
        owner: input.owner,
        account_id: input.account,
        provider_id: "irs",
    };
    let _ = sealed_key_id(input.blob);
    assert!(
        ring().unseal(&id, input.blob).is_err(),
        "a blob the fuzzer made opened"
    );

    let sealed = ring().seal(&id, input.plaintext).unwrap();
    assert_eq!(&ring().unseal(&id, &sealed).unwrap()[..], input.plaintext);
    if let Some((at, bits)) = input.flip.filter(|(_, b)| *b != 0) {
        let mut bad = sealed.clone();
        let i = usize::from(at) % bad.len();
        bad[i] ^= bits;
        assert!(ring().unseal(&id, &bad).is_err(), "a tampered blob opened");
    }
    let other = RecordIdentity {
        account_id: "someone-else",
        ..id
    };
    if input.account != "someone-else" {
        assert!(
            ring().unseal(&other, &sealed).is_err(),
            "a moved blob opened"
        );
    }
    let other_owner = RecordIdentity {
        owner: b"someone-else",
        ..id
    };
    if input.owner != b"someone-else" {
        assert!(
            ring().unseal(&other_owner, &sealed).is_err(),
            "a blob moved under another owner opened"
        );
    }
});
