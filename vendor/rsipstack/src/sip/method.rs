use crate::prelude::*;
use crate::sip::Error;

#[derive(Debug, PartialEq, Eq, Clone, Copy, Hash)]
pub enum Method {
    Ack,
    Bye,
    Cancel,
    Info,
    Invite,
    Message,
    Notify,
    Options,
    PRack,
    Publish,
    Refer,
    Register,
    Subscribe,
    Update,
    // acd patch: unknown methods parse instead of failing the whole message.
    /// Any other method token (RFC 3261 §25.1 `extension-method`), kept so a
    /// UAS can answer it 501 Not Implemented (§8.2.1) instead of the parser
    /// dropping the request. acd patch, see ACD-PATCHES.md.
    Extension(ExtensionMethod),
}

// acd patch: the token type behind `Method::Extension`.
/// The longest extension method token [`Method::Extension`] carries; longer
/// ones are still a parse error.
pub const MAX_EXTENSION_METHOD_LEN: usize = 22;

/// An extension method's token, stored inline so `Method` stays `Copy`.
#[derive(PartialEq, Eq, Clone, Copy, Hash)]
pub struct ExtensionMethod {
    len: u8,
    bytes: [u8; MAX_EXTENSION_METHOD_LEN],
}

impl ExtensionMethod {
    /// `Some` for a non-empty RFC 3261 token of at most
    /// [`MAX_EXTENSION_METHOD_LEN`] bytes.
    pub fn new(token: &str) -> Option<Self> {
        let is_token_char = |b: u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
        if token.is_empty()
            || token.len() > MAX_EXTENSION_METHOD_LEN
            || !token.bytes().all(is_token_char)
        {
            return None;
        }
        let mut bytes = [0u8; MAX_EXTENSION_METHOD_LEN];
        bytes[..token.len()].copy_from_slice(token.as_bytes());
        Some(Self {
            len: token.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII token bytes are ever stored (see `new`).
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl core::fmt::Debug for ExtensionMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Method {
    pub fn all() -> Vec<Method> {
        vec![
            Self::Ack,
            Self::Bye,
            Self::Cancel,
            Self::Info,
            Self::Invite,
            Self::Message,
            Self::Notify,
            Self::Options,
            Self::PRack,
            Self::Publish,
            Self::Refer,
            Self::Register,
            Self::Subscribe,
            Self::Update,
        ]
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Info => "INFO",
            Self::Invite => "INVITE",
            Self::Message => "MESSAGE",
            Self::Notify => "NOTIFY",
            Self::Options => "OPTIONS",
            Self::PRack => "PRACK",
            Self::Publish => "PUBLISH",
            Self::Refer => "REFER",
            Self::Register => "REGISTER",
            Self::Subscribe => "SUBSCRIBE",
            Self::Update => "UPDATE",
            Self::Extension(m) => m.as_str(), // acd patch
        };
        write!(f, "{}", s)
    }
}

impl core::str::FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            m if m.eq_ignore_ascii_case("ACK") => Ok(Self::Ack),
            m if m.eq_ignore_ascii_case("BYE") => Ok(Self::Bye),
            m if m.eq_ignore_ascii_case("CANCEL") => Ok(Self::Cancel),
            m if m.eq_ignore_ascii_case("INFO") => Ok(Self::Info),
            m if m.eq_ignore_ascii_case("INVITE") => Ok(Self::Invite),
            m if m.eq_ignore_ascii_case("MESSAGE") => Ok(Self::Message),
            m if m.eq_ignore_ascii_case("NOTIFY") => Ok(Self::Notify),
            m if m.eq_ignore_ascii_case("OPTIONS") => Ok(Self::Options),
            m if m.eq_ignore_ascii_case("PRACK") => Ok(Self::PRack),
            m if m.eq_ignore_ascii_case("PUBLISH") => Ok(Self::Publish),
            m if m.eq_ignore_ascii_case("REFER") => Ok(Self::Refer),
            m if m.eq_ignore_ascii_case("REGISTER") => Ok(Self::Register),
            m if m.eq_ignore_ascii_case("SUBSCRIBE") => Ok(Self::Subscribe),
            m if m.eq_ignore_ascii_case("UPDATE") => Ok(Self::Update),
            // acd patch: any other token is an extension method.
            m => ExtensionMethod::new(m)
                .map(Self::Extension)
                .ok_or_else(|| Error::ParseError(format!("invalid method: {}", m))),
        }
    }
}

impl core::convert::TryFrom<&str> for Method {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl core::convert::TryFrom<&[u8]> for Method {
    type Error = Error;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        core::str::from_utf8(b)?.parse()
    }
}
