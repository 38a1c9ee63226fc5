//! Reading `Sec-WebSocket-Extensions` offers and answering the first acceptable one (RFC 7692 §5–7).

use std::fmt::Write as _;

/// The server's side of the negotiation. The defaults are what `compression = true` means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest window the server compresses with, 9–15 bits (default 15). Used when the client
    /// does not ask for a smaller one; below 15 it is announced in the response.
    pub server_max_window_bits: u8,
    /// Window asked of clients that let the server limit theirs (`client_max_window_bits` in the
    /// offer), 9–15 bits (default 15). A smaller window makes the inflate state smaller.
    pub client_max_window_bits: u8,
    /// Compress each message on its own (default true). Costs some ratio on small similar
    /// messages; buys no deflate state per connection (one per worker serves them all) and
    /// messages that are compressed once for every connection they are pushed to.
    pub server_no_context_takeover: bool,
    /// Ask clients to compress each message on its own (default true), so that a connection's
    /// inflate state can be released between messages. Requests are small; little is lost.
    pub client_no_context_takeover: bool,
    /// Messages shorter than this are sent uncompressed (default 64 bytes): below it deflate
    /// saves next to nothing and can even grow the message.
    pub threshold: usize,
    /// zlib level, 0–9, for messages under [`LARGE_MESSAGE`] bytes (default 1: the fixed codes,
    /// two fifths of level 6's worker instructions on 1 KiB of JSON-like data, for 0.27 of the
    /// size end to end against level 6's 0.21; the level that keeps a compressed 1 KiB message
    /// within twice the cost of an uncompressed one; see BENCHMARKS.md).
    pub level: u32,
    /// zlib level, 0–9, for messages of [`LARGE_MESSAGE`] bytes and more (default 1: on 60 KB of
    /// JSON-like data 0.22 of the size at a tenth of level 6's CPU; see BENCHMARKS.md).
    pub large_level: u32,
}

/// From this size on a message is compressed at [`Config::large_level`].
pub const LARGE_MESSAGE: usize = 16 << 10;

impl Default for Config {
    fn default() -> Self {
        Config {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            threshold: 64,
            level: 1,
            large_level: 1,
        }
    }
}

/// A [`Config`] value out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A window size outside 9–15 (zlib cannot make an 8-bit raw window).
    #[error("window bits must be in 9..15, got {0}")]
    WindowBits(u8),
    /// A level over 9.
    #[error("compression level must be in 0..9, got {0}")]
    Level(u32),
}

impl Config {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for wb in [self.server_max_window_bits, self.client_max_window_bits] {
            if !(9..=15).contains(&wb) {
                return Err(ConfigError::WindowBits(wb));
            }
        }
        for level in [self.level, self.large_level] {
            if level > 9 {
                return Err(ConfigError::Level(level));
            }
        }
        Ok(())
    }

    /// The zlib level to compress a message of `len` bytes at.
    pub fn level_for(&self, len: usize) -> u32 {
        if len >= LARGE_MESSAGE {
            self.large_level
        } else {
            self.level
        }
    }

    /// True when a message of `len` bytes is to be compressed.
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }
}

/// What both sides agreed to: what the response says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The server compresses each message on its own.
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The window the server compresses with, 9–15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8–15 (8 only if the client offered it).
    pub client_max_window_bits: u8,
}

impl Params {
    /// The `Sec-WebSocket-Extensions` value of the response, parameters in the RFC's order,
    /// window sizes only when under 15.
    pub fn response(&self) -> String {
        let mut s = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            s.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            let _ = write!(s, "; server_max_window_bits={}", self.server_max_window_bits);
        }
        if self.client_max_window_bits < 15 {
            let _ = write!(s, "; client_max_window_bits={}", self.client_max_window_bits);
        }
        s
    }
}

/// A `permessage-deflate` offer as parsed, before the server's choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offer {
    /// `server_no_context_takeover` was present.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover` was present.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: `Some(None)` without a value, `Some(Some(N))` with one.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why an offer is declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// Not `extension *( ";" param )` with tokens and quoted strings (RFC 6455 §9.1).
    #[error("malformed extension offer")]
    Syntax,
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter")]
    UnknownParam,
    /// A parameter given twice.
    #[error("duplicate permessage-deflate parameter")]
    Duplicate,
    /// A value where none is allowed, none where one is needed, or one out of 8–15.
    #[error("invalid permessage-deflate parameter value")]
    BadValue,
    /// `server_max_window_bits=8`: zlib cannot compress with an 8-bit raw window.
    #[error("server_max_window_bits=8 is not supported")]
    WindowEight,
}

/// Parses every `permessage-deflate` offer of the header lines, in order; offers of other
/// extensions are left out. Each element is its own result: a bad one does not spoil the others.
pub fn parse_offers<'a, I>(lines: I) -> Vec<Result<Offer, OfferError>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut offers = Vec::new();
    for line in lines {
        for element in split_outside_quotes(line, b',') {
            let element = trim(element);
            if element.is_empty() {
                continue; // "a, , b": the list rule of RFC 7230 §7 allows empty elements.
            }
            let mut parts = split_outside_quotes(element, b';');
            let name = trim(parts.next().unwrap_or_default());
            if !name.eq_ignore_ascii_case(b"permessage-deflate") {
                if !is_token(name) {
                    offers.push(Err(OfferError::Syntax));
                }
                continue;
            }
            offers.push(parse_params(parts));
        }
    }
    offers
}

fn parse_params<'a>(params: impl Iterator<Item = &'a [u8]>) -> Result<Offer, OfferError> {
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            None => (trim(param), None),
            Some(eq) => (trim(&param[..eq]), Some(unquote(trim(&param[eq + 1..]))?)),
        };
        if !is_token(name) {
            return Err(OfferError::Syntax);
        }
        let flag = |seen: &mut bool| {
            if *seen {
                return Err(OfferError::Duplicate);
            }
            if value.is_some() {
                return Err(OfferError::BadValue);
            }
            *seen = true;
            Ok(())
        };
        match name.to_ascii_lowercase().as_slice() {
            b"server_no_context_takeover" => flag(&mut offer.server_no_context_takeover)?,
            b"client_no_context_takeover" => flag(&mut offer.client_no_context_takeover)?,
            b"server_max_window_bits" => {
                if offer.server_max_window_bits.is_some() {
                    return Err(OfferError::Duplicate);
                }
                let bits = window_bits(value.as_deref().ok_or(OfferError::BadValue)?)?;
                offer.server_max_window_bits = Some(bits);
            }
            b"client_max_window_bits" => {
                if offer.client_max_window_bits.is_some() {
                    return Err(OfferError::Duplicate);
                }
                offer.client_max_window_bits = Some(value.as_deref().map(window_bits).transpose()?);
            }
            _ => return Err(OfferError::UnknownParam),
        }
    }
    if offer.server_max_window_bits == Some(8) {
        return Err(OfferError::WindowEight);
    }
    Ok(offer)
}

/// `1*DIGIT` in 8–15 without a leading zero (RFC 7692 §7.1.2.1).
fn window_bits(v: &[u8]) -> Result<u8, OfferError> {
    match v {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + d - b'0'),
        _ => Err(OfferError::BadValue),
    }
}

/// A token as it is, or a quoted string's content, which must then be a token (RFC 7692 §5.2).
fn unquote(v: &[u8]) -> Result<Vec<u8>, OfferError> {
    let content = match v {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut it = inner.iter();
            while let Some(&b) = it.next() {
                match b {
                    b'\\' => out.push(*it.next().ok_or(OfferError::Syntax)?),
                    b'"' => return Err(OfferError::Syntax),
                    _ => out.push(b),
                }
            }
            out
        }
        _ => v.to_vec(),
    };
    if is_token(&content) {
        Ok(content)
    } else {
        Err(OfferError::Syntax)
    }
}

/// RFC 7230 §3.2.6 `token`.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &s[start..end]
}

/// Splits at `sep` outside double quotes (a backslash escapes the next byte inside them).
fn split_outside_quotes(s: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == sep && !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Picks the first offer of `lines` (every `Sec-WebSocket-Extensions` value of the request, in
/// order) that `config` can accept, and what was agreed; `None` declines them all: the
/// connection is served uncompressed and the response carries no extension.
///
/// For an accepted offer: `server_max_window_bits` is the smaller of the offer's and the
/// config's, announced when under 15; `client_max_window_bits` is announced, as the smaller of the
/// offer's value and the config's, only when the offer has the parameter; the no-context-takeover
/// flags are the offer's or the config's, the server being free to add both (§7.1.1).
pub fn negotiate<'a, I>(lines: I, config: &Config) -> Option<Params>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    parse_offers(lines).into_iter().find_map(|offer| {
        let offer = offer.ok()?;
        let client_max_window_bits = match offer.client_max_window_bits {
            None => 15,
            Some(None) => config.client_max_window_bits,
            Some(Some(v)) => v.min(config.client_max_window_bits),
        };
        Some(Params {
            server_no_context_takeover: offer.server_no_context_takeover || config.server_no_context_takeover,
            client_no_context_takeover: offer.client_no_context_takeover || config.client_no_context_takeover,
            server_max_window_bits: offer.server_max_window_bits.unwrap_or(15).min(config.server_max_window_bits),
            client_max_window_bits,
        })
    })
}
