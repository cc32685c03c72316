//! Retries and time limits, counted: how many attempts a TLS or connect failure gets,
//! the backoff cap, the overall deadline, a connect timeout, a 504, the response cap
//! without `Content-Length`, and `Retry-After` honoured.
//!
//! One test, in sections, in a binary of its own: connect attempts are counted from the
//! SDK's `request not sent` events, through a global subscriber that no other test in
//! this process can race.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chart_auth::{ChartClient, ClientSecret, Config, Error, RetryPolicy};
use chart_mock_server::Scenario;
use support::capture::Capture;
use support::{env, receive_with, status_fault};

/// How many `request not sent` events were logged since the last call.
fn take_not_sent(capture: &Capture) -> usize {
    capture.take_text().matches("request not sent").count()
}

fn client(
    base: &str,
    policy: RetryPolicy,
    adjust: impl FnOnce(chart_auth::ConfigBuilder) -> chart_auth::ConfigBuilder,
) -> ChartClient {
    ChartClient::new(
        adjust(
            Config::builder("c", ClientSecret::new("s"))
                .api_base(base)
                .retry(policy),
        )
        .build()
        .unwrap(),
    )
    .unwrap()
}

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_time_limits() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let fast = RetryPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        ..RetryPolicy::default()
    };

    // A refused connection is retried up to max_attempts, then reported; the code was
    // never sent.
    let refused = format!("http://127.0.0.1:{}", closed_port());
    let c = client(&refused, fast.clone(), |b| b);
    take_not_sent(&capture);
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!err.code_may_be_spent());
    assert_eq!(take_not_sent(&capture), 4, "one event per attempt");

    // A TLS handshake failure likewise: a server that answers the ClientHello with
    // garbage sees exactly max_attempts connections.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = garbage.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in garbage.incoming() {
            let Ok(mut stream) = stream else { return };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.1 400 Not TLS\r\n\r\n");
        }
    });
    let c = client(&format!("https://127.0.0.1:{port}"), fast.clone(), |b| b);
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        4,
        "TLS failures are retried"
    );

    // max_backoff caps each wait (exactly, in transport's unit tests): uncapped, 1 s
    // doubling waits over 5 retries would take at least 31 s in sum; capped at 20 ms
    // they take at most 100 ms. 10 s leaves room for any load on the machine.
    let capped = RetryPolicy {
        max_attempts: 6,
        base_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    };
    let c = client(&refused, capped, |b| b.deadline(Duration::from_secs(30)));
    take_not_sent(&capture);
    let started = Instant::now();
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(take_not_sent(&capture), 6);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waits were not capped: {:?}",
        started.elapsed()
    );

    // The overall deadline ends retries, however many attempts are left.
    let patient = RetryPolicy {
        max_attempts: 1_000,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    let c = client(&refused, patient, |b| {
        b.connect_timeout(Duration::from_millis(100))
            .request_timeout(Duration::from_millis(250))
            .deadline(Duration::from_millis(300))
    });
    take_not_sent(&capture);
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    let attempts = take_not_sent(&capture);
    assert!((1..1_000).contains(&attempts), "{attempts} attempts");

    // A wait that would end past the deadline is never begun: with backoffs of an hour,
    // the deadline (300 ms) ends the retries at once, not an hour later.
    let sleepy = RetryPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        ..RetryPolicy::default()
    };
    let c = client(&refused, sleepy, |b| {
        b.connect_timeout(Duration::from_millis(100))
            .request_timeout(Duration::from_millis(250))
            .deadline(Duration::from_millis(300))
    });
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        receive_with(&c, "code").exchange(&c),
    )
    .await
    .expect("no backoff past the deadline was slept")
    .unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(60));
    take_not_sent(&capture);

    // A connect timeout: a listener whose backlog is full drops the SYN.
    let full = tokio::net::TcpSocket::new_v4().unwrap();
    full.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full_addr = full.local_addr().unwrap();
    let listener = full.listen(1).unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(100), s.connect(full_addr)).await
        {
            fillers.push(stream);
        }
    }
    assert!(
        fillers.len() < 8,
        "the backlog never filled, so the connect below could succeed"
    );
    let c = client(
        &format!("http://{full_addr}"),
        RetryPolicy {
            max_attempts: 2,
            ..fast.clone()
        },
        |b| b.connect_timeout(Duration::from_millis(200)),
    );
    take_not_sent(&capture);
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(!err.code_may_be_spent());
    assert_eq!(take_not_sent(&capture), 2, "a connect timeout is retried");
    drop((listener, fillers));

    // A 504 from Chart's side: the code may be spent, so it is reported, never resent.
    let env = env().await;
    env.mock.add_fault(status_fault(504, 1, None));
    let code = env.mint(false, Scenario::Success);
    let err = env
        .receive(&code, chart_auth::Flow::Embedded)
        .exchange(&env.client)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Server { status, .. } if status.as_u16() == 504),
        "{err:?}"
    );
    assert!(err.code_may_be_spent());
    // A status fault answers before the body is read, so count every token request.
    let token_requests = |env: &support::Env| {
        env.mock
            .journal()
            .iter()
            .filter(|e| e.path == "/auth/token")
            .count()
    };
    assert_eq!(token_requests(&env), 1, "not resent");

    // Retry-After is honoured: the rate_limited scenario answers 429 with
    // `Retry-After: 1`, and the retry comes no sooner.
    let code = env.mint(false, Scenario::RateLimited);
    let started = Instant::now();
    env.receive(&code, chart_auth::Flow::Embedded)
        .exchange(&env.client)
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.token_requests_for(&code), 2);

    // A Retry-After within the cap but past the overall deadline is not waited for: the
    // 429 comes back at once as RateLimited with its wait, for the frontend to show.
    let env_deadline = support::env_with(|b| {
        b.connect_timeout(Duration::from_secs(1))
            .request_timeout(Duration::from_secs(1))
            .deadline(Duration::from_secs(2))
    })
    .await;
    env_deadline.mock.add_fault(status_fault(429, 1, Some(5)));
    let code = env_deadline.mint(false, Scenario::Success);
    let err = env_deadline
        .receive(&code, chart_auth::Flow::Embedded)
        .exchange(&env_deadline.client)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(w), .. } if w == Duration::from_secs(5)),
        "{err:?}"
    );
    assert_eq!(token_requests(&env_deadline), 1, "not resent");

    // The response cap is inclusive: an answer of exactly max_response_bytes is read,
    // one byte more is refused, with and without a Content-Length.
    let body = r#"{"account_id":"a","provider_id":"irs","access_token":"t"}"#;
    for chunked in [false, true] {
        for (limit, fits) in [(body.len(), true), (body.len() - 1, false)] {
            let port = canned_answer(body, chunked);
            let c = client(&format!("http://127.0.0.1:{port}"), fast.clone(), |b| {
                b.max_response_bytes(limit)
            });
            let got = receive_with(&c, "code").exchange(&c).await;
            match (fits, got) {
                (true, Ok(_)) => {}
                (false, Err(Error::ResponseTooLarge { .. })) => {}
                (_, other) => panic!("chunked {chunked}, limit {limit}: {:?}", other.err()),
            }
        }
    }

    // The response cap holds without a Content-Length: a chunked answer that never ends
    // is cut at the cap.
    let endless = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = endless.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = endless.accept() else {
            return;
        };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let chunk = format!("{:x}\r\n{}\r\n", 4096, "a".repeat(4096));
        for _ in 0..1_000 {
            if stream.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
    });
    let c = client(&format!("http://127.0.0.1:{port}"), fast, |b| {
        b.max_response_bytes(16 * 1024)
    });
    let err = receive_with(&c, "code").exchange(&c).await.unwrap_err();
    assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err:?}");
    assert!(err.code_may_be_spent(), "the request reached the server");
}

/// A server on a free port that answers one request with a 200 and `body`, declared or
/// chunked; gives the port.
fn canned_answer(body: &'static str, chunked: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let answer = if chunked {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let _ = stream.write_all(answer.as_bytes());
    });
    port
}
