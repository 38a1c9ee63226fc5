//! Frame headers: the opcode, the flags, the lengths and the mask, parsed from the front of the
//! received bytes without touching any buffer.

use super::ProtocolError;

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: a UTF-8 text message.
    Text,
    /// 0x2: a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// The 4-bit code.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    pub(super) fn from_bits(b: u8) -> Result<Opcode, ProtocolError> {
        Ok(match b {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            0x3..=0x7 => return Err(ProtocolError::ReservedDataOpcode(b)),
            _ => return Err(ProtocolError::ReservedControlOpcode(b)),
        })
    }

    /// True for close, ping and pong.
    pub fn is_control(self) -> bool {
        self.bits() >= 0x8
    }
}

/// A parsed client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// FIN: the last frame of a message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as they came (`0x40`, `0x20`, `0x10` of the first byte): whether they
    /// may be set is for the layer that negotiated extensions to say.
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// Length of the header, mask included.
    pub len: usize,
    /// The masking key.
    pub mask: [u8; 4],
    /// Length of the payload.
    pub payload_len: usize,
}

impl Header {
    /// RSV1, which permessage-deflate uses to mark a compressed message.
    pub fn rsv1(&self) -> bool {
        self.rsv & 0x40 != 0
    }
}

/// What [`parse`] found at the front of the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header.
    Complete(Header),
    /// Not all of the header yet: at least this many more bytes are needed.
    Partial {
        /// Bytes missing at least.
        need: usize,
    },
}

/// What the receiving side allows, checked as soon as the bytes that break it are in: before the
/// mask, and long before the payload.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Largest payload accepted.
    pub max_payload_len: u64,
    /// Largest message accepted, fragments together.
    pub max_message_len: u64,
    /// Bytes of the fragmented message received so far (0 outside one).
    pub message_len: u64,
    /// The opcode of the fragmented message being received, if any.
    pub fragmented: Option<Opcode>,
}

/// Parses the client frame header at the front of `b`.
#[inline]
pub fn parse(b: &[u8], rules: &Rules) -> Result<Parsed, ProtocolError> {
    let partial = |need: usize| Ok(Parsed::Partial { need });
    if b.len() < 2 {
        return partial(2 - b.len());
    }
    let (b0, b1) = (b[0], b[1]);
    let fin = b0 & 0x80 != 0;
    let rsv = b0 & 0x70;
    let opcode = Opcode::from_bits(b0 & 0x0f)?;
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::Unmasked);
    }
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        if len7 > 125 {
            return Err(ProtocolError::ControlTooLong);
        }
    } else {
        match (opcode, rules.fragmented) {
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (Opcode::Text | Opcode::Binary, Some(_)) => return Err(ProtocolError::UnfinishedMessage),
            _ => {}
        }
    }
    let (ext, payload_len) = match len7 {
        126 => {
            if b.len() < 4 {
                return partial(4 - b.len());
            }
            (2, u64::from(u16::from_be_bytes([b[2], b[3]])))
        }
        127 => {
            if b.len() < 10 {
                return partial(10 - b.len());
            }
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[2..10]);
            let l = u64::from_be_bytes(l);
            if l >> 63 != 0 {
                return Err(ProtocolError::LengthTopBit);
            }
            (8, l)
        }
        n => (0, u64::from(n)),
    };
    if payload_len > rules.max_payload_len {
        return Err(ProtocolError::PayloadTooBig { len: payload_len, max: rules.max_payload_len });
    }
    if !opcode.is_control() {
        let total = rules.message_len + payload_len;
        if total > rules.max_message_len {
            return Err(ProtocolError::MessageTooBig { len: total, max: rules.max_message_len });
        }
    }
    let len = 2 + ext + 4;
    if b.len() < len {
        return partial(len - b.len());
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&b[len - 4..len]);
    // Bounded by max_payload_len, which the caller chose to fit in memory.
    let payload_len = usize::try_from(payload_len).map_err(|_| ProtocolError::LengthTopBit)?;
    Ok(Parsed::Complete(Header { fin, rsv, opcode, len, mask, payload_len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules { max_payload_len: 1 << 20, max_message_len: 1 << 20, message_len: 0, fragmented: None };

    #[test]
    fn keeps_the_rsv_bits_and_says_what_is_missing() {
        assert_eq!(parse(&[0xc2], &RULES), Ok(Parsed::Partial { need: 1 }));
        assert_eq!(parse(&[0xc2, 0xfe, 0], &RULES), Ok(Parsed::Partial { need: 1 }));
        assert_eq!(parse(&[0xc2, 0xfe, 1, 0], &RULES), Ok(Parsed::Partial { need: 4 }));
        let Ok(Parsed::Complete(h)) = parse(&[0xc2, 0x85, 1, 2, 3, 4], &RULES) else { panic!() };
        assert_eq!((h.fin, h.rsv, h.rsv1(), h.opcode, h.len, h.mask, h.payload_len), (true, 0x40, true, Opcode::Binary, 6, [1, 2, 3, 4], 5));
        let Ok(Parsed::Complete(h)) = parse(&[0x31, 0x80, 0, 0, 0, 0], &RULES) else { panic!() };
        assert_eq!((h.fin, h.rsv, h.opcode), (false, 0x30, Opcode::Text));
    }

    #[test]
    fn limits_are_checked_before_the_mask_arrives() {
        let rules = Rules { max_payload_len: 100, ..RULES };
        assert_eq!(parse(&[0x82, 0xfe, 0, 101], &rules), Err(ProtocolError::PayloadTooBig { len: 101, max: 100 }));
        let rules = Rules { max_message_len: 150, message_len: 100, fragmented: Some(Opcode::Binary), ..RULES };
        assert_eq!(parse(&[0x80, 0xfe, 0, 51], &rules), Err(ProtocolError::MessageTooBig { len: 151, max: 150 }));
    }
}
