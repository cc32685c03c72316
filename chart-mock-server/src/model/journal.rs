//! The journal: each request as the mock keeps it (no secret), within a cap in bytes.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::fault::FaultKind;
use crate::config::ClientIx;
use crate::report::Observations;

/// One request, as the journal keeps it. No secret is ever recorded: the client
/// secret, the code, tokens and the `Authorization` header are left out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    /// The `Chart-Request-Id` of the answer.
    pub request_id: String,
    /// Seconds since the Unix epoch, on the mock's clock.
    pub at: u64,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query (which may carry secrets).
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The error name, or `success`.
    pub outcome: String,
    /// The client id, if the request named one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// The non-secret id of the code the request carried, if the mock knows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code_id: Option<String>,
    /// The fault applied, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fault: Option<FaultKind>,
    /// The React SDK's `metadata` kept with the code that this request used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<String>,
}

/// One request as the journal holds it: ids as bytes, the client as its index, and
/// text only where a client chose it.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) request_id: Uuid,
    pub(crate) at: u64,
    pub(crate) method: http::Method,
    pub(crate) path: Cow<'static, str>,
    pub(crate) status: u16,
    pub(crate) outcome: Cow<'static, str>,
    pub(crate) client: Option<ClientIx>,
    pub(crate) code_id: Option<Uuid>,
    pub(crate) fault: Option<FaultKind>,
    pub(crate) metadata: Option<Arc<str>>,
}

impl Record {
    /// What the record costs, roughly: its fixed part and the text it holds.
    pub(super) fn size(&self) -> usize {
        let owned = |c: &Cow<'static, str>| match c {
            Cow::Borrowed(_) => 0,
            Cow::Owned(s) => s.len(),
        };
        std::mem::size_of::<Self>()
            + owned(&self.path)
            + owned(&self.outcome)
            + self.method.as_str().len()
            + self.metadata.as_ref().map_or(0, |m| m.len())
    }
}

/// The journal and the report's window, behind one lock: a request takes it once.
#[derive(Debug)]
pub(super) struct Records {
    pub(super) journal: VecDeque<Record>,
    pub(super) bytes: usize,
    pub(super) observations: Observations,
}

/// The most bytes the journal holds, whatever its length: about 2 MiB.
pub const JOURNAL_MAX_BYTES: usize = 2 << 20;
/// The longest journal field a client chooses (a path, a client id, metadata).
pub const JOURNAL_FIELD_MAX: usize = 256;

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
pub(super) fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max.saturating_sub(3);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
}

/// Cuts text a client chose; text the mock wrote itself stays as it is.
pub(super) fn cut_owned(text: &mut Cow<'static, str>, max: usize) {
    if let Cow::Owned(s) = text {
        cut(s, max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        path: Cow<'static, str>,
        outcome: Cow<'static, str>,
        metadata: Option<&str>,
    ) -> Record {
        Record {
            request_id: Uuid::nil(),
            at: 0,
            method: http::Method::GET,
            path,
            status: 200,
            outcome,
            client: None,
            code_id: None,
            fault: None,
            metadata: metadata.map(Arc::from),
        }
    }

    /// A record costs its fixed part, the method, and every text it owns; text the mock
    /// wrote itself (borrowed) costs nothing more.
    #[test]
    fn a_record_costs_what_it_holds() {
        let base = record(Cow::Borrowed("/auth/token"), Cow::Borrowed("ok"), None).size();
        assert_eq!(base, std::mem::size_of::<Record>() + "GET".len());
        let owned_path = record(Cow::Owned("x".repeat(10)), Cow::Borrowed("ok"), None);
        assert_eq!(owned_path.size(), base + 10);
        let owned_outcome = record(Cow::Borrowed("/"), Cow::Owned("y".repeat(7)), None);
        assert_eq!(owned_outcome.size(), base + 7);
        let with_metadata = record(Cow::Borrowed("/"), Cow::Borrowed("ok"), Some("zzz"));
        assert_eq!(with_metadata.size(), base + 3);
        let mut post = record(Cow::Borrowed("/"), Cow::Borrowed("ok"), None);
        post.method = http::Method::POST;
        assert_eq!(post.size(), base + 1);
    }

    #[test]
    fn cut_keeps_text_up_to_its_cap_and_cuts_on_a_character_boundary() {
        let mut at_cap = "a".repeat(256);
        cut(&mut at_cap, 256);
        assert_eq!(at_cap, "a".repeat(256));
        let mut over = "a".repeat(257);
        cut(&mut over, 256);
        assert_eq!(over, format!("{}…", "a".repeat(253)));
        // Two-byte characters: byte 253 is inside one, so the cut steps back to 252.
        let mut wide = "é".repeat(200);
        cut(&mut wide, 256);
        assert_eq!(wide, format!("{}…", "é".repeat(126)));
        assert!(wide.len() <= 256);
    }
}
