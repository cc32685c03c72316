//! Data keys wrapped by a key-encryption key in a PKCS#11 token (an HSM, or SoftHSM2).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use zeroize::{Zeroize, Zeroizing};

use super::{DATA_KEY_LEN, DataKey, KeySource};
use crate::error::KeySourceError;
use crate::ids::KeyId;

/// The environment variable that names the PKCS#11 module (a `.so` path).
pub const MODULE_VAR: &str = "CHART_PKCS11_MODULE";
/// The environment variable that names the token, by label.
pub const TOKEN_VAR: &str = "CHART_PKCS11_TOKEN";
/// The environment variable that names the key-encryption key, by label.
pub const KEY_VAR: &str = "CHART_PKCS11_KEY";
/// The environment variable that holds the user PIN.
pub const PIN_VAR: &str = "CHART_PKCS11_PIN";
/// The environment variable that names a file holding the user PIN (mode 0600).
pub const PIN_FILE_VAR: &str = "CHART_PKCS11_PIN_FILE";

const SCHEME_KIND: &str = "pkcs11";
const GCM_IV_LEN: usize = 12;
const GCM_TAG_BITS: u64 = 128;
/// A PIN file is a line, not a document.
const MAX_PIN_FILE: u64 = 4096;

/// How data keys are wrapped under the KEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrapMechanism {
    /// AES key wrap with padding, RFC 5649 (`CKM_AES_KEY_WRAP_PAD`), by `C_WrapKey`.
    AesKeyWrapPad,
    /// AES-GCM (`CKM_AES_GCM`) by `C_Encrypt`, with a random 96-bit IV and the key id
    /// as AAD. For modules that do not offer key wrap with padding.
    AesGcm,
}

impl WrapMechanism {
    /// The name the keyring file records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AesKeyWrapPad => "aes-key-wrap-pad",
            Self::AesGcm => "aes-gcm",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::AesKeyWrapPad, Self::AesGcm]
            .into_iter()
            .find(|m| m.as_str() == name)
    }

    fn mechanism_type(self) -> MechanismType {
        match self {
            Self::AesKeyWrapPad => MechanismType::AES_KEY_WRAP_PAD,
            Self::AesGcm => MechanismType::AES_GCM,
        }
    }
}

/// Where the KEK lives and how to log in: module, token label, key label and PIN.
///
/// ```no_run
/// use chart_auth::vault::{Keyring, Pkcs11Config};
/// let hsm = Pkcs11Config::new("/usr/lib/softhsm/libsofthsm2.so", "chart", "chart-kek")
///     .pin_file("/run/secrets/hsm-pin".as_ref())?
///     .open()?;
/// let keyring = Keyring::load_with("keys.txt".as_ref(), std::sync::Arc::new(hsm))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pkcs11Config {
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin: Option<Zeroizing<String>>,
    mechanism: Option<WrapMechanism>,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

impl Pkcs11Config {
    /// The module's path, the token's label and the KEK's label. The PIN comes next,
    /// from [`Pkcs11Config::pin`] or [`Pkcs11Config::pin_file`].
    pub fn new(
        module: impl Into<PathBuf>,
        token_label: impl Into<String>,
        key_label: impl Into<String>,
    ) -> Self {
        Self {
            module: module.into(),
            token_label: token_label.into(),
            key_label: key_label.into(),
            pin: None,
            mechanism: None,
        }
    }

    /// Reads the configuration from `CHART_PKCS11_MODULE`, `CHART_PKCS11_TOKEN`,
    /// `CHART_PKCS11_KEY`, and the PIN from the file named by `CHART_PKCS11_PIN_FILE` or
    /// else from `CHART_PKCS11_PIN`.
    pub fn from_env() -> Result<Self, KeySourceError> {
        Self::from_vars(|name| std::env::var(name).ok())?.pin_from_env()
    }

    /// The module, token and key of [`Pkcs11Config::from_env`], read through `var`; an
    /// empty value counts as unset.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, KeySourceError> {
        let var = |name: &'static str| {
            var(name)
                .filter(|v| !v.is_empty())
                .ok_or(KeySourceError::Module {
                    operation: "configuration",
                    reason: format!("{name} is not set"),
                })
        };
        Ok(Self::new(var(MODULE_VAR)?, var(TOKEN_VAR)?, var(KEY_VAR)?))
    }

    /// Takes the PIN from the file named by `CHART_PKCS11_PIN_FILE`, or else from
    /// `CHART_PKCS11_PIN`.
    pub fn pin_from_env(self) -> Result<Self, KeySourceError> {
        self.pin_from_settings(
            std::env::var_os(PIN_FILE_VAR),
            std::env::var(PIN_VAR).ok().map(Zeroizing::new),
        )
    }

    /// [`Pkcs11Config::pin_from_env`] on the values of its two variables: the file wins
    /// when it is named; an empty value counts as unset.
    fn pin_from_settings(
        self,
        file: Option<std::ffi::OsString>,
        pin: Option<Zeroizing<String>>,
    ) -> Result<Self, KeySourceError> {
        if let Some(path) = file.filter(|p| !p.is_empty()) {
            return self.pin_file(Path::new(&path));
        }
        match pin {
            Some(pin) if !pin.is_empty() => Ok(self.pin(pin.as_str())),
            _ => Err(KeySourceError::PinMissing(PIN_VAR)),
        }
    }

    /// The user PIN.
    pub fn pin(mut self, pin: impl Into<String>) -> Self {
        self.pin = Some(Zeroizing::new(pin.into()));
        self
    }

    /// Reads the user PIN from a file: its first line. Like a key file, the file must
    /// not be readable by group or others.
    pub fn pin_file(self, path: &Path) -> Result<Self, KeySourceError> {
        let cannot = |reason: String| KeySourceError::Module {
            operation: "reading the PIN file",
            reason: format!("{}: {reason}", path.display()),
        };
        let file = File::open(path).map_err(|e| cannot(e.to_string()))?;
        let mode = file
            .metadata()
            .map_err(|e| cannot(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(cannot(format!(
                "accessible by others (mode {:o}); run `chmod 600` on it",
                mode & 0o777
            )));
        }
        let mut text = Zeroizing::new(String::with_capacity(MAX_PIN_FILE as usize + 1));
        file.take(MAX_PIN_FILE)
            .read_to_string(&mut text)
            .map_err(|e| cannot(e.to_string()))?;
        let pin = text.lines().next().unwrap_or("").trim();
        if pin.is_empty() {
            return Err(cannot("it is empty".into()));
        }
        Ok(self.pin(pin))
    }

    /// Uses this mechanism instead of the module's best one.
    pub fn mechanism(mut self, mechanism: WrapMechanism) -> Self {
        self.mechanism = Some(mechanism);
        self
    }

    /// The same module, token and PIN, with another KEK: for `kek rotate`.
    pub fn with_key_label(&self, key_label: impl Into<String>) -> Self {
        Self {
            module: self.module.clone(),
            token_label: self.token_label.clone(),
            key_label: key_label.into(),
            pin: self.pin.clone(),
            mechanism: self.mechanism,
        }
    }

    /// Loads the module, finds the token, logs in, finds the KEK and checks that it is
    /// non-extractable and may wrap and unwrap.
    pub fn open(&self) -> Result<Pkcs11KeySource, KeySourceError> {
        let (context, session, slot) = self.login()?;
        let mechanism = match self.mechanism {
            Some(m) => m,
            None => best_mechanism(&offered(&context, slot)?)?,
        };
        let kek = find_kek(&session, &self.key_label, mechanism)?;
        Ok(Pkcs11KeySource {
            context,
            session: Mutex::new(session),
            slot,
            kek,
            mechanism,
            token_label: self.token_label.clone(),
            key_label: self.key_label.clone(),
        })
    }

    /// Generates the KEK in the token: AES-256, persistent, sensitive and
    /// non-extractable, allowed to wrap, unwrap, encrypt and decrypt. Refuses when a key
    /// with this label exists.
    pub fn create_kek(&self) -> Result<(), KeySourceError> {
        let (_context, session, _slot) = self.login()?;
        let label = self.key_label.as_bytes().to_vec();
        let existing = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.clone()),
            ])
            .map_err(|e| module("finding keys", e))?;
        if !existing.is_empty() {
            return Err(KeySourceError::KekUnusable {
                label: self.key_label.clone(),
                reason: "a key with this label already exists",
            });
        }
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(label),
                    Attribute::ValueLen((DATA_KEY_LEN as u64).into()),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .map_err(|e| module("generating the key-encryption key", e))?;
        Ok(())
    }

    fn login(&self) -> Result<(Pkcs11, Session, Slot), KeySourceError> {
        let pin = self
            .pin
            .as_ref()
            .ok_or(KeySourceError::PinMissing(PIN_VAR))?;
        let not_loaded = |reason: String| KeySourceError::ModuleNotLoaded {
            module: self.module.clone(),
            reason,
        };
        let context = loaded_module(&self.module).map_err(not_loaded)?;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| module("listing slots", e))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == self.token_label)
            })
            .ok_or_else(|| KeySourceError::TokenNotFound {
                label: self.token_label.clone(),
            })?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| module("opening a session", e))?;
        let secret = AuthPin::new(pin.as_str().into());
        match session.login(UserType::User, Some(&secret)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange, _)) => {
                return Err(KeySourceError::PinRefused);
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(KeySourceError::PinLocked),
            Err(e) => return Err(module("logging in", e)),
        }
        Ok((context, session, slot))
    }
}

/// The module at `path`, loaded and initialized once per process.
///
/// `C_Initialize` is called once per process, and SoftHSM2 is not safe against two
/// threads initializing at once: the loser can see a half-built slot list. So every
/// source shares one context per module, made under a lock.
fn loaded_module(path: &Path) -> Result<Pkcs11, String> {
    static LOADED: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());
    let path = path.canonicalize().map_err(|e| format!("{e}"))?;
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(context) = loaded.get(&path) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(&path).map_err(|e| e.to_string())?;
    // Another library in this process may have initialized the module already.
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e.to_string()),
    }
    loaded.insert(path, context.clone());
    Ok(context)
}

/// Data keys wrapped by a non-extractable AES key-encryption key in a PKCS#11 token.
///
/// Made by [`Pkcs11Config::open`]. The KEK never leaves the token; data keys cross the
/// module boundary only to be wrapped or unwrapped, and in this process live only in
/// zeroizing memory. One session is shared under a lock: the module is used only when
/// a keyring is loaded or saved, never per seal.
pub struct Pkcs11KeySource {
    context: Pkcs11,
    session: Mutex<Session>,
    slot: Slot,
    kek: ObjectHandle,
    mechanism: WrapMechanism,
    token_label: String,
    key_label: String,
}

impl fmt::Debug for Pkcs11KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeySource")
            .field("token_label", &self.token_label)
            .field("key_label", &self.key_label)
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeySource {
    /// The mechanism this source wraps new keys with.
    pub fn mechanism(&self) -> WrapMechanism {
        self.mechanism
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl KeySource for Pkcs11KeySource {
    fn scheme(&self) -> String {
        format!("{SCHEME_KIND} {}", self.mechanism.as_str())
    }

    fn describe(&self) -> String {
        format!(
            "key-encryption key {:?} in token {:?} ({})",
            self.key_label,
            self.token_label,
            self.mechanism.as_str()
        )
    }

    fn wrap_key(&self, id: KeyId, key: &DataKey) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
        let session = self.session();
        match self.mechanism {
            WrapMechanism::AesKeyWrapPad => {
                let mut template = secret_key_template();
                template.push(Attribute::Value(key.to_vec()));
                let object = session.create_object(&template);
                for attribute in &mut template {
                    if let Attribute::Value(bytes) = attribute {
                        bytes.zeroize();
                    }
                }
                let object = object.map_err(|e| module("importing a data key to wrap", e))?;
                let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, self.kek, object);
                let _ = session.destroy_object(object);
                Ok(Zeroizing::new(
                    wrapped.map_err(|e| module("wrapping a data key", e))?,
                ))
            }
            WrapMechanism::AesGcm => {
                let mut iv = [0u8; GCM_IV_LEN];
                session
                    .generate_random_slice(&mut iv)
                    .map_err(|e| module("drawing an IV", e))?;
                let aad = gcm_aad(id);
                let mut params_iv = iv;
                let params = GcmParams::new(&mut params_iv, &aad, GCM_TAG_BITS.into())
                    .map_err(|e| module("setting up AES-GCM", e))?;
                let sealed = session
                    .encrypt(&Mechanism::AesGcm(params), self.kek, key.as_ref())
                    .map_err(|e| module("wrapping a data key", e))?;
                let mut out = Zeroizing::new(Vec::with_capacity(GCM_IV_LEN + sealed.len()));
                out.extend_from_slice(&iv);
                out.extend_from_slice(&sealed);
                Ok(out)
            }
        }
    }

    fn unwrap_key(
        &self,
        id: KeyId,
        scheme: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, KeySourceError> {
        let mut words = scheme.split_whitespace();
        let (Some(SCHEME_KIND), Some(name), None) = (words.next(), words.next(), words.next())
        else {
            return Err(KeySourceError::Mismatch {
                found: super::shown_scheme(scheme),
                given: self.scheme(),
                hint: "open it with the key source that wrote it",
            });
        };
        let mechanism = WrapMechanism::from_name(name).ok_or(KeySourceError::Mismatch {
            found: super::shown_scheme(scheme),
            given: self.scheme(),
            hint: "this build knows aes-key-wrap-pad and aes-gcm",
        })?;
        let session = self.session();
        if mechanism != self.mechanism && !offered(&self.context, self.slot)?.contains(&mechanism) {
            return Err(KeySourceError::MechanismUnsupported(mechanism.as_str()));
        }
        let failed = |e: CkError| match e {
            CkError::Pkcs11(rv, _) if unwrap_refusal(rv) => KeySourceError::UnwrapFailed(id),
            e => module("unwrapping a data key", e),
        };
        let bytes = match mechanism {
            WrapMechanism::AesKeyWrapPad => {
                let object = session
                    .unwrap_key(
                        &Mechanism::AesKeyWrapPad,
                        self.kek,
                        wrapped,
                        &secret_key_template(),
                    )
                    .map_err(failed)?;
                let value = session.get_attributes(object, &[AttributeType::Value]);
                let _ = session.destroy_object(object);
                let mut value = value.map_err(|e| module("reading an unwrapped data key", e))?;
                match value.pop() {
                    Some(Attribute::Value(bytes)) => Zeroizing::new(bytes),
                    _ => return Err(KeySourceError::UnwrapFailed(id)),
                }
            }
            WrapMechanism::AesGcm => {
                if wrapped.len() < GCM_IV_LEN {
                    return Err(KeySourceError::UnwrapFailed(id));
                }
                let (iv, sealed) = wrapped.split_at(GCM_IV_LEN);
                let mut iv: [u8; GCM_IV_LEN] = iv.try_into().expect("split at the IV length");
                let aad = gcm_aad(id);
                let params = GcmParams::new(&mut iv, &aad, GCM_TAG_BITS.into())
                    .map_err(|e| module("setting up AES-GCM", e))?;
                Zeroizing::new(
                    session
                        .decrypt(&Mechanism::AesGcm(params), self.kek, sealed)
                        .map_err(failed)?,
                )
            }
        };
        let key: [u8; DATA_KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeySourceError::UnwrapFailed(id))?;
        Ok(Zeroizing::new(key))
    }
}

/// A data key as a session object that this process may read back: it is never stored
/// in the token.
fn secret_key_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ]
}

fn gcm_aad(id: KeyId) -> Vec<u8> {
    let mut aad = b"chart-auth data key ".to_vec();
    aad.extend_from_slice(&id.0.to_be_bytes());
    aad
}

/// The wrap mechanisms the token offers, both ways.
fn offered(context: &Pkcs11, slot: Slot) -> Result<Vec<WrapMechanism>, KeySourceError> {
    let types = context
        .get_mechanism_list(slot)
        .map_err(|e| module("listing mechanisms", e))?;
    let mut out = Vec::new();
    for mechanism in [WrapMechanism::AesKeyWrapPad, WrapMechanism::AesGcm] {
        if !types.contains(&mechanism.mechanism_type()) {
            continue;
        }
        let info = context
            .get_mechanism_info(slot, mechanism.mechanism_type())
            .map_err(|e| module("reading mechanism info", e))?;
        let both_ways = match mechanism {
            WrapMechanism::AesKeyWrapPad => info.wrap() && info.unwrap(),
            WrapMechanism::AesGcm => info.encrypt() && info.decrypt(),
        };
        if both_ways {
            out.push(mechanism);
        }
    }
    Ok(out)
}

/// Key wrap with padding when the token offers it, else AES-GCM.
pub(crate) fn best_mechanism(offered: &[WrapMechanism]) -> Result<WrapMechanism, KeySourceError> {
    [WrapMechanism::AesKeyWrapPad, WrapMechanism::AesGcm]
        .into_iter()
        .find(|m| offered.contains(m))
        .ok_or(KeySourceError::MechanismUnsupported(
            "AES key wrap with padding (RFC 5649) or AES-GCM",
        ))
}

fn find_kek(
    session: &Session,
    label: &str,
    mechanism: WrapMechanism,
) -> Result<ObjectHandle, KeySourceError> {
    let unusable = |reason| KeySourceError::KekUnusable {
        label: label.into(),
        reason,
    };
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| module("finding the key-encryption key", e))?;
    let kek = match found.as_slice() {
        [] => {
            return Err(KeySourceError::KekMissing {
                label: label.into(),
            });
        }
        [one] => *one,
        _ => return Err(unusable("more than one key has this label")),
    };
    let (use_a, use_b) = match mechanism {
        WrapMechanism::AesKeyWrapPad => (AttributeType::Wrap, AttributeType::Unwrap),
        WrapMechanism::AesGcm => (AttributeType::Encrypt, AttributeType::Decrypt),
    };
    let attributes = session
        .get_attributes(
            kek,
            &[
                AttributeType::KeyType,
                AttributeType::Extractable,
                use_a,
                use_b,
            ],
        )
        .map_err(|e| module("reading the key-encryption key's attributes", e))?;
    for attribute in attributes {
        match attribute {
            Attribute::KeyType(t) if t != KeyType::AES => {
                return Err(unusable("it is not an AES key"));
            }
            Attribute::Extractable(true) => {
                return Err(unusable(
                    "it is extractable; a KEK must never leave the token",
                ));
            }
            Attribute::Wrap(false) | Attribute::Unwrap(false) => {
                return Err(unusable("it may not wrap and unwrap keys"));
            }
            Attribute::Encrypt(false) | Attribute::Decrypt(false) => {
                return Err(unusable("it may not encrypt and decrypt"));
            }
            _ => {}
        }
    }
    Ok(kek)
}

/// The return values by which a module says "this does not unwrap under this key".
/// SoftHSM2 reports a failed RFC 5649 integrity check as `CKR_GENERAL_ERROR`; by the
/// time a data key is unwrapped the KEK has been found and checked, so here that
/// error means the same.
fn unwrap_refusal(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::GeneralError
            | RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange
    )
}

fn module(operation: &'static str, e: CkError) -> KeySourceError {
    KeySourceError::Module {
        operation,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_token_and_key_variables_are_required_and_not_empty() {
        let vars = |empty: &'static str| {
            move |name: &str| (name != empty).then(|| format!("{name}-value"))
        };
        let config = Pkcs11Config::from_vars(vars("none")).unwrap();
        assert_eq!(config.token_label, "CHART_PKCS11_TOKEN-value");
        for missing in [MODULE_VAR, TOKEN_VAR, KEY_VAR] {
            let err = Pkcs11Config::from_vars(vars(missing)).unwrap_err();
            assert!(
                err.to_string().contains(&format!("{missing} is not set")),
                "{err}"
            );
        }
        let empty = |name: &str| {
            (name != KEY_VAR)
                .then(|| "x".to_owned())
                .or(Some(String::new()))
        };
        let err = Pkcs11Config::from_vars(empty).unwrap_err();
        assert!(
            err.to_string().contains("CHART_PKCS11_KEY is not set"),
            "{err}"
        );
    }

    #[test]
    fn a_config_shows_where_the_key_is_and_never_the_pin() {
        let config =
            Pkcs11Config::new("/usr/lib/softhsm/libsofthsm2.so", "chart", "kek").pin("s3cret-pin");
        let shown = format!("{config:?}");
        for part in [
            "Pkcs11Config",
            "libsofthsm2.so",
            "\"chart\"",
            "\"kek\"",
            "<redacted>",
        ] {
            assert!(shown.contains(part), "{part} missing from {shown}");
        }
        assert!(!shown.contains("s3cret-pin"), "{shown}");
    }

    #[test]
    fn the_pin_file_wins_over_the_pin_and_empty_values_count_as_unset() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pin");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .unwrap()
            .write_all(b"from-file\n")
            .unwrap();
        let config = || Pkcs11Config::new("/m.so", "token", "key");
        let pin = |text: &str| Some(Zeroizing::new(text.to_owned()));
        let shown = |c: Result<Pkcs11Config, KeySourceError>| c.unwrap().pin.unwrap().to_string();
        let named = Some(file.clone().into_os_string());
        assert_eq!(
            shown(config().pin_from_settings(named, pin("p"))),
            "from-file"
        );
        assert_eq!(
            shown(config().pin_from_settings(Some("".into()), pin("p"))),
            "p"
        );
        assert_eq!(shown(config().pin_from_settings(None, pin("p"))), "p");
        for missing in [None, pin("")] {
            assert!(matches!(
                config().pin_from_settings(None, missing),
                Err(KeySourceError::PinMissing(PIN_VAR))
            ));
        }
    }

    #[test]
    fn a_bad_wrapped_key_is_an_unwrap_failure_and_a_broken_module_is_not() {
        for refusal in [
            RvError::GeneralError,
            RvError::WrappedKeyInvalid,
            RvError::WrappedKeyLenRange,
            RvError::EncryptedDataInvalid,
            RvError::EncryptedDataLenRange,
            RvError::DataInvalid,
            RvError::DataLenRange,
        ] {
            assert!(unwrap_refusal(refusal), "{refusal:?}");
        }
        for fault in [
            RvError::DeviceError,
            RvError::PinIncorrect,
            RvError::SessionHandleInvalid,
            RvError::KeyHandleInvalid,
        ] {
            assert!(!unwrap_refusal(fault), "{fault:?}");
        }
    }

    #[test]
    fn key_wrap_is_preferred_then_gcm_then_a_clear_refusal() {
        use WrapMechanism::{AesGcm, AesKeyWrapPad};
        assert_eq!(
            best_mechanism(&[AesGcm, AesKeyWrapPad]).unwrap(),
            AesKeyWrapPad
        );
        assert_eq!(best_mechanism(&[AesGcm]).unwrap(), AesGcm);
        let e = best_mechanism(&[]).unwrap_err();
        assert!(matches!(e, KeySourceError::MechanismUnsupported(_)));
        assert!(e.to_string().contains("RFC 5649"), "{e}");
    }
}
