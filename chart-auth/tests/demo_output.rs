//! The demo, as the README's first command runs it (headless here): what it prints
//! holds none of the tokens it stored, nor its keys, in any form.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chart_auth::vault::{FileStore, Keyring, TokenStore, Vault};

#[path = "../../tests/tests/support/leaks.rs"]
mod leaks;

/// The demo example, which `cargo test` builds beside this test. `cargo test --test
/// demo_output` alone does not build examples, so a binary older than any source it is
/// built from is refused rather than run.
fn demo_binary() -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile = deps.parent().unwrap().parent().unwrap();
    let demo = profile.join("examples").join("demo");
    let built = std::fs::metadata(&demo)
        .and_then(|m| m.modified())
        .expect("the demo example is built by `cargo test` (or `cargo build --example demo`)");
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        crate_dir.join("Cargo.toml"),
        crate_dir.join("examples/demo.rs"),
    ];
    let mut dirs = vec![crate_dir.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path)
            } else {
                sources.push(path)
            }
        }
    }
    for source in sources {
        let changed = std::fs::metadata(&source).unwrap().modified().unwrap();
        assert!(
            changed <= built,
            "the demo binary is older than {}: run `cargo build -p chart-auth --example demo` \
             (or the whole `cargo test`) first",
            source.display()
        );
    }
    demo
}

#[tokio::test]
async fn the_demo_prints_no_token_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(demo_binary())
        .args(["--headless", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo example is built by `cargo test`");
    let pid = child.id();
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        // The headless run takes seconds; never let a hang stall the suite.
        while started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
            if Command::new("kill")
                .args(["-0", &pid.to_string()])
                .status()
                .is_ok_and(|s| !s.success())
            {
                return;
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    let printed = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&printed)
    );

    let keyring = Keyring::load(&dir.path().join("keyring")).unwrap();
    let mut secrets = leaks::keyring_keys(&keyring.to_text().unwrap());
    let store = FileStore::open(dir.path().join("tokens")).unwrap();
    let first = store
        .list()
        .await
        .unwrap()
        .pop()
        .expect("the demo stored a token");
    let client_id = store.get(&first).await.unwrap().unwrap().client_id;
    let vault = Vault::new(client_id, keyring, store);
    for account in vault.list_all().await.unwrap() {
        let token = vault
            .unseal(account.owner(), account.account_id())
            .await
            .unwrap();
        secrets.push(token.expose_secret().as_bytes().to_vec());
    }
    assert!(secrets.len() >= 2, "a key and at least one token");
    leaks::assert_no_leak(&printed, &secrets, "the demo's output");
}

#[test]
fn the_demo_answers_only_on_its_loopback_names_and_posts_need_its_csrf_token() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(demo_binary())
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .find_map(|l| {
            l.strip_prefix("Open ")
                .map(|r| r.split_whitespace().next().unwrap().to_owned())
        })
        .expect("the demo prints its URL");
    let port = url
        .rsplit_once(':')
        .unwrap()
        .1
        .trim_end_matches('/')
        .to_owned();
    let send = |head: &str| {
        let mut tcp =
            std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        write!(
            tcp,
            "{head}Connection: close\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        answer[9..12].to_owned()
    };
    let status = |host: &str| send(&format!("GET /api/accounts HTTP/1.1\r\nHost: {host}\r\n"));
    // A POST needs the CSRF cookie's value in x-csrf-token (then the empty body is a 400).
    let post = |extra: &str| {
        send(&format!(
            "POST /api/disconnect HTTP/1.1\r\nHost: localhost:{port}\r\n\
             Content-Type: application/json\r\n{extra}"
        ))
    };
    let posts = [
        post("Cookie: demo_sid=s; demo_csrf=t1\r\n"),
        post("Cookie: demo_sid=s; demo_csrf=t1\r\nx-csrf-token: t2\r\n"),
        post("Cookie: demo_sid=s\r\nx-csrf-token: t1\r\n"),
        post("Cookie: demo_sid=s; demo_csrf=t1\r\nx-csrf-token: t1\r\n"),
    ];
    let answers = [
        status(&format!("localhost:{port}")),
        status(&format!("127.0.0.1:{port}")),
        // A rebound name, another port, no port.
        status(&format!("rebind.example:{port}")),
        status("localhost:1"),
        status("localhost"),
    ];
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answers, ["200", "200", "421", "421", "421"]);
    assert_eq!(posts, ["403", "403", "403", "400"]);
}
