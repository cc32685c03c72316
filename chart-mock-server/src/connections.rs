//! Connection limits, for a mock on a shared network: a cap on open connections, a
//! deadline for a new connection's first byte, and an idle timeout, HTTP/1 and HTTP/2
//! alike.
//!
//! At the cap, the oldest connection that has not sent a byte is closed to make room
//! (a silent socket is the cheapest way to exhaust a server), and only when every open
//! connection is in use is a new one refused, at once. So a flood of silent sockets
//! never keeps a health check out.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The connection cap when the config gives none.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// File descriptors kept free for everything else (the listener, logs, the CA file).
const SPARE_FILES: u64 = 32;

/// The limits every connection is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) first_byte: Duration,
    pub(crate) idle: Duration,
}

impl Limits {
    /// The config's limits; without a cap, 1,024 or what the open-file limit allows.
    pub(crate) fn new(max: Option<usize>, first_byte_ms: u64, idle_ms: u64) -> Self {
        let files = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let by_files =
            usize::try_from(files.saturating_sub(SPARE_FILES).max(1)).unwrap_or(usize::MAX);
        Self {
            max_connections: max.unwrap_or(DEFAULT_MAX_CONNECTIONS.min(by_files)),
            first_byte: Duration::from_millis(first_byte_ms),
            idle: Duration::from_millis(idle_ms),
        }
    }
}

/// What one connection has done, shared by its reader and its watchdog.
#[derive(Debug)]
pub(crate) struct Activity {
    base: Instant,
    started: AtomicBool,
    /// Milliseconds since `base` of the last byte read.
    last_read_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            started: AtomicBool::new(false),
            last_read_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The client sent bytes.
    pub(crate) fn read(&self) {
        self.started.store(true, Ordering::Relaxed);
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(now, Ordering::Relaxed);
    }

    /// A request is under way until the returned guard drops.
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves when the connection should be closed: silent past the first-byte
    /// deadline, or idle (no request under way, nothing read) past the idle timeout.
    pub(crate) async fn expired(&self, limits: Limits) {
        loop {
            let deadline = if self.started.load(Ordering::Relaxed) {
                let last = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
                self.base + last + limits.idle
            } else {
                self.base + limits.first_byte
            };
            if Instant::now() >= deadline {
                if self.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A request is under way (a slow scenario, a latency fault): look again
                // after another idle period.
                tokio::time::sleep(limits.idle).await;
                continue;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Marks a request as under way while it lives.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Slot {
    activity: Arc<Activity>,
    evict: Option<oneshot::Sender<()>>,
}

/// The open connections, oldest first.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Mutex<(u64, BTreeMap<u64, Slot>)>,
}

/// One admitted connection: its activity, and a signal that it was evicted. Leaves the
/// registry when dropped.
pub(crate) struct Admission {
    pub(crate) activity: Arc<Activity>,
    pub(crate) evicted: oneshot::Receiver<()>,
    id: u64,
    registry: Arc<Registry>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut slots = self
            .registry
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        slots.1.remove(&self.id);
    }
}

impl Registry {
    /// Admits a new connection under the cap, closing the oldest silent one if the cap
    /// is reached; `None` when every open connection is in use.
    pub(crate) fn admit(self: &Arc<Self>, max: usize) -> Option<Admission> {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (next, slots) = &mut *guard;
        if slots.len() >= max {
            let silent = slots
                .iter()
                .find(|(_, s)| !s.activity.started.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(mut slot) = slots.remove(&silent)
                && let Some(evict) = slot.evict.take()
            {
                let _ = evict.send(());
            }
        }
        let id = *next;
        *next += 1;
        let activity = Arc::new(Activity::new());
        let (evict, evicted) = oneshot::channel();
        slots.insert(
            id,
            Slot {
                activity: activity.clone(),
                evict: Some(evict),
            },
        );
        Some(Admission {
            activity,
            evicted,
            id,
            registry: self.clone(),
        })
    }
}

/// A connection's IO, noting every read in its [`Activity`].
pub(crate) struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub(crate) fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
