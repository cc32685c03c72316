//! The identifiers the other layers share: tax providers, vault key ids and owners.

use std::fmt;

/// A tax provider, as named by Chart. Unknown names are kept, not refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderId {
    /// `turbotax`
    TurboTax,
    /// `hr` (H&R Block)
    HrBlock,
    /// `taxact`
    TaxAct,
    /// `tax_slayer`
    TaxSlayer,
    /// `jackson` (Jackson Hewitt)
    Jackson,
    /// `free_tax_usa`
    FreeTaxUsa,
    /// `irs`
    Irs,
    /// `irs_tax_pro`
    IrsTaxPro,
    /// `pilot`
    Pilot,
    /// `cch_axcess`
    CchAxcess,
    /// `drake`
    Drake,
    /// `proconnect`
    ProConnect,
    /// `chart-sandbox`
    ChartSandbox,
    /// A provider this SDK version does not know yet.
    Other(String),
}

const PROVIDERS: [(ProviderId, &str); 13] = [
    (ProviderId::TurboTax, "turbotax"),
    (ProviderId::HrBlock, "hr"),
    (ProviderId::TaxAct, "taxact"),
    (ProviderId::TaxSlayer, "tax_slayer"),
    (ProviderId::Jackson, "jackson"),
    (ProviderId::FreeTaxUsa, "free_tax_usa"),
    (ProviderId::Irs, "irs"),
    (ProviderId::IrsTaxPro, "irs_tax_pro"),
    (ProviderId::Pilot, "pilot"),
    (ProviderId::CchAxcess, "cch_axcess"),
    (ProviderId::Drake, "drake"),
    (ProviderId::ProConnect, "proconnect"),
    (ProviderId::ChartSandbox, "chart-sandbox"),
];

impl ProviderId {
    /// Chart's name for the provider.
    ///
    /// ```
    /// use chart_auth::ProviderId;
    /// assert_eq!(ProviderId::from("hr"), ProviderId::HrBlock);
    /// assert_eq!(ProviderId::from("new_one").as_str(), "new_one");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => PROVIDERS
                .iter()
                .find(|(p, _)| p == known)
                .map_or("", |(_, name)| name),
        }
    }

    /// Every provider this SDK version knows.
    pub fn known() -> impl Iterator<Item = ProviderId> {
        PROVIDERS.iter().map(|(p, _)| p.clone())
    }
}

impl From<&str> for ProviderId {
    fn from(name: &str) -> Self {
        PROVIDERS
            .iter()
            .find(|(_, n)| *n == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(p, _)| p.clone())
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A vault key's 32-bit id, written into every sealed token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whose account a record is: the application's user or tenant id, opaque bytes to the
/// SDK (1 to [`Owner::MAX_LEN`] bytes).
///
/// Every read of the vault asks for an (owner, account) pair, and the owner is bound
/// into the sealed record, so an account asked for under another owner is not found,
/// whatever a file or row claims. Take it from your server-side session, never from
/// anything the browser sends back.
///
/// ```
/// use chart_auth::Owner;
/// let owner = Owner::new("user-42")?;
/// assert_eq!(owner.as_bytes(), b"user-42");
/// assert!(Owner::new("").is_err());
/// # Ok::<(), chart_auth::OwnerError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner(Vec<u8>);

/// Why an owner id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// An empty owner id: every record must name whose it is.
    #[error("the owner id is empty")]
    Empty,
    /// An owner id over [`Owner::MAX_LEN`] bytes.
    #[error("the owner id is {0} bytes, over the limit of 256")]
    TooLong(usize),
}

impl Owner {
    /// The longest owner id, in bytes.
    pub const MAX_LEN: usize = 256;

    /// An owner id: any bytes, 1 to [`Owner::MAX_LEN`] of them.
    pub fn new(id: impl AsRef<[u8]>) -> Result<Self, OwnerError> {
        let id = id.as_ref();
        match id.len() {
            0 => Err(OwnerError::Empty),
            n if n > Self::MAX_LEN => Err(OwnerError::TooLong(n)),
            _ => Ok(Self(id.to_vec())),
        }
    }

    /// Whether this is the owner of pre-owner records.
    pub(crate) fn is_legacy(&self) -> bool {
        self.0.is_empty()
    }

    /// The owner's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The owner of a record read from a store, where the empty id is the legacy owner.
    pub(crate) fn from_stored(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_legacy() {
            return f.write_str("Owner(<legacy>)");
        }
        write!(f, "Owner({:?})", String::from_utf8_lossy(&self.0))
    }
}
