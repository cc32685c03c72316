//! The identifiers the other layers share: tax providers and vault key ids.

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
