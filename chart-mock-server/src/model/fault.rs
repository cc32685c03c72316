//! Faults waiting for requests, as the control plane takes them.

use serde::{Deserialize, Serialize};

/// A fault waiting for requests, as the control plane takes it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Which path it hits (default `/auth/token`).
    #[serde(default = "default_fault_path")]
    pub path: String,
    /// How many requests it hits (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// For `status`: the status to answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// For `latency`: the delay before the normal answer.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// For `status` 429 and 503: the `Retry-After` seconds (default 1, at most
    /// [`MAX_RETRY_AFTER_SECS`]).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

/// The longest `Retry-After` a fault may ask for: a day.
pub const MAX_RETRY_AFTER_SECS: u64 = 86_400;

fn default_fault_path() -> String {
    "/auth/token".into()
}

fn one() -> u32 {
    1
}

/// The fault kinds of the control plane.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Waits `delay_ms`, then answers normally.
    Latency,
    /// Answers `status` with a matching error body, before the grant is checked.
    Status,
    /// Closes the connection before any answer.
    Reset,
    /// Sends the status line and headers of a 200, then closes.
    Empty,
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body stops midway.
    Truncated,
}

impl FaultKind {
    /// The kind's name in the control plane, e.g. `malformed_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Status => "status",
            Self::Reset => "reset",
            Self::Empty => "empty",
            Self::MalformedJson => "malformed_json",
            Self::Truncated => "truncated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The control plane's names, as DESIGN §5 spells them.
    #[test]
    fn fault_kinds_have_the_contract_names() {
        let names = [
            (FaultKind::Latency, "latency"),
            (FaultKind::Status, "status"),
            (FaultKind::Reset, "reset"),
            (FaultKind::Empty, "empty"),
            (FaultKind::MalformedJson, "malformed_json"),
            (FaultKind::Truncated, "truncated"),
        ];
        for (kind, name) in names {
            assert_eq!(kind.as_str(), name);
        }
    }
}
