//! What minting a code takes and gives: the scenarios, the known providers, the
//! request (from the control plane or the Connect page), the minted code and its errors.

use serde::{Deserialize, Serialize};

/// What happens when a code is exchanged (chosen at minting or on the Connect page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The exchange succeeds.
    #[default]
    Success,
    /// Every exchange answers 500 `server_error`; the code is not spent.
    ServerError,
    /// The first exchange answers 429 with `Retry-After: 1` without spending the code;
    /// the next succeeds.
    RateLimited,
    /// The exchange succeeds after a delay (the config's `slow_ms`).
    Slow,
    /// The user denied access: the Connect page answers `error=access_denied`, and an
    /// exchange of a minted denied code fails with `invalid_grant_error`.
    Denied,
}

impl Scenario {
    /// Every scenario, in the Connect page's order.
    pub const ALL: [Scenario; 5] = [
        Self::Success,
        Self::ServerError,
        Self::RateLimited,
        Self::Slow,
        Self::Denied,
    ];

    /// The scenario's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ServerError => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Slow => "slow",
            Self::Denied => "denied",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Chart's tax providers, as the Connect page offers them.
pub const PROVIDERS: [(&str, &str); 13] = [
    ("chart-sandbox", "Chart Sandbox"),
    ("turbotax", "TurboTax"),
    ("hr", "H&R Block"),
    ("taxact", "TaxAct"),
    ("tax_slayer", "TaxSlayer"),
    ("jackson", "Jackson Hewitt"),
    ("free_tax_usa", "FreeTaxUSA"),
    ("irs", "IRS"),
    ("irs_tax_pro", "IRS Tax Pro"),
    ("pilot", "Pilot"),
    ("cch_axcess", "CCH Axcess"),
    ("drake", "Drake"),
    ("proconnect", "ProConnect"),
];

/// A request to mint a code, as the control plane takes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The client the code is issued to.
    pub client_id: String,
    /// The provider (default `chart-sandbox`).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The Redirect flow's `redirect_uri`; none means an embedded-flow code.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// What the exchange does (default `success`).
    #[serde(default)]
    pub scenario: Option<Scenario>,
    /// The React SDK's `metadata` (JSON text), kept with the code for the journal.
    #[serde(default)]
    pub metadata: Option<String>,
    /// A returning taxpayer: the exchange answers with this account id (a lowercase
    /// hyphenated UUID) instead of a new one, as when a taxpayer connects again.
    #[serde(default)]
    pub taxpayer_id: Option<String>,
}

/// A freshly minted code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MintedCode {
    /// The authorization code.
    pub code: String,
    /// Seconds until it expires, on the mock's clock.
    pub expires_in: u64,
    /// A non-secret id for the code, which journal entries name.
    pub code_id: String,
}

/// Why minting a code failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// No such client.
    #[error("unknown client_id")]
    UnknownClient,
    /// The `redirect_uri` is not registered for the client.
    #[error("redirect_uri is not registered for this client")]
    UnregisteredRedirect,
    /// The provider is empty or too long.
    #[error("provider_id must be 1 to 64 characters")]
    BadProvider,
    /// The taxpayer id is not a lowercase hyphenated UUID.
    #[error("taxpayer_id must be a lowercase hyphenated UUID")]
    BadTaxpayer,
    /// The metadata is longer than a code keeps.
    #[error("metadata must be at most 256 bytes")]
    BadMetadata,
}
