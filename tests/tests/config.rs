//! Configuration: every refusal of `ConfigBuilder::build`, and `Config::from_env` and
//! `Keyring::from_env` as a process started with those variables sees them.

use std::process::Command;
use std::time::Duration;

use chart_auth::{ClientSecret, Config, ConfigError, Error, RetryPolicy};

fn refused(builder: chart_auth::ConfigBuilder) -> ConfigError {
    match builder.build() {
        Err(Error::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    }
}

fn base() -> chart_auth::ConfigBuilder {
    Config::builder("client", ClientSecret::new("secret"))
}

#[test]
fn every_build_refusal_has_its_error() {
    assert!(matches!(
        refused(Config::builder("", ClientSecret::new("s"))),
        ConfigError::EmptyClientId
    ));
    assert!(matches!(
        refused(Config::builder("c", ClientSecret::new(""))),
        ConfigError::EmptyClientSecret
    ));
    assert!(matches!(
        refused(base().api_version(Some("2024-01-01\r\nX-Injected: 1"))),
        ConfigError::BadApiVersion
    ));
    assert!(matches!(
        refused(
            base()
                .connect_timeout(Duration::from_secs(5))
                .request_timeout(Duration::from_secs(1))
        ),
        ConfigError::TimeoutOrder
    ));
    assert!(matches!(
        refused(
            base()
                .request_timeout(Duration::from_secs(30))
                .deadline(Duration::from_secs(10))
        ),
        ConfigError::TimeoutOrder
    ));
    assert!(matches!(
        refused(base().retry(RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        })),
        ConfigError::NoAttempts
    ));
    assert!(matches!(
        refused(base().webpki_roots(false)),
        ConfigError::NoTrustedRoots
    ));
    let bad_pem =
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        refused(base().add_root_certificates_pem(bad_pem)),
        ConfigError::BadRootCertificate(_)
    ));
    assert!(matches!(
        refused(base().add_root_certificates_pem(b"no PEM here at all")),
        ConfigError::BadRootCertificate(_)
    ));
    // What is valid builds: the defaults, and the API version of the contract.
    base().build().unwrap();
    base().api_version(Some("2024-01-01")).build().unwrap();
    base().api_version(None).build().unwrap();
}

/// The child half of `from_env_reads_the_documented_variables`: prints what it read.
#[test]
#[ignore = "the child half of from_env_reads_the_documented_variables"]
fn from_env_child() {
    assert!(
        std::env::var_os("CHART_FROM_ENV_CHILD").is_some(),
        "started by the parent"
    );
    match Config::from_env() {
        Ok(c) => println!("config {} {}", c.client_id(), c.api_base()),
        Err(e) => println!("config error {e:?}"),
    }
    match chart_auth::vault::Keyring::from_env() {
        Ok(k) => println!("keyring {} keys, primary {}", k.keys().count(), k.primary()),
        Err(e) => println!("keyring error {e}"),
    }
}

fn child(vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "from_env_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "-q",
    ])
    .env("CHART_FROM_ENV_CHILD", "1");
    for name in [
        "CHART_CLIENT_ID",
        "CHART_CLIENT_SECRET",
        "CHART_API_BASE",
        "CHART_CONNECT_BASE",
        "CHART_KEYRING_FILE",
        "CHART_VAULT_KEYRING",
        "CHART_PKCS11_MODULE",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn from_env_reads_the_documented_variables() {
    let out = child(&[]);
    assert!(
        out.contains("config error Config(MissingEnv(\"CHART_CLIENT_ID\"))"),
        "{out}"
    );
    assert!(
        out.contains(
            "keyring error bad keyring: neither CHART_KEYRING_FILE nor CHART_VAULT_KEYRING is set"
        ),
        "{out}"
    );

    let out = child(&[("CHART_CLIENT_ID", "my-app")]);
    assert!(out.contains("MissingEnv(\"CHART_CLIENT_SECRET\")"), "{out}");

    let key = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";
    let out = child(&[
        ("CHART_CLIENT_ID", "my-app"),
        ("CHART_CLIENT_SECRET", "s3cret-from-env"),
        ("CHART_API_BASE", "http://127.0.0.1:4010"),
        ("CHART_VAULT_KEYRING", key),
    ]);
    assert!(out.contains("config my-app http://127.0.0.1:4010"), "{out}");
    assert!(out.contains("keyring 1 keys, primary 1"), "{out}");
    assert!(!out.contains("s3cret-from-env") && !out.contains(key));

    // The file wins over the text, and is checked like `Keyring::load`.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.txt");
    let mut ring = chart_auth::vault::Keyring::generate();
    ring.add_key().unwrap();
    ring.save(&file).unwrap();
    let out = child(&[
        ("CHART_KEYRING_FILE", file.to_str().unwrap()),
        ("CHART_VAULT_KEYRING", key),
    ]);
    assert!(out.contains("keyring 2 keys, primary 1"), "{out}");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = child(&[("CHART_KEYRING_FILE", file.to_str().unwrap())]);
    assert!(
        out.contains("keyring error") && out.contains("chmod 600"),
        "{out}"
    );
    // A module named without the feature (or without its other variables) is an error,
    // never a silent fall back to plaintext keys.
    let out = child(&[
        ("CHART_VAULT_KEYRING", key),
        ("CHART_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so"),
    ]);
    assert!(out.contains("keyring error"), "{out}");
}
