//! Protobuf wire primitives: varints, tags and wire types.

/// The wire types of protobuf (groups are recognised only to skip them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    /// 0: a varint.
    Varint,
    /// 1: 8 bytes.
    Fixed64,
    /// 2: a length, then that many bytes.
    Len,
    /// 3: start of a (deprecated) group.
    StartGroup,
    /// 4: end of a group.
    EndGroup,
    /// 5: 4 bytes.
    Fixed32,
}

impl WireType {
    /// The wire type encoded in the low 3 bits of a tag, if valid.
    #[inline]
    pub fn from_bits(bits: u64) -> Option<WireType> {
        Some(match bits & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }

    /// The 3-bit code of the wire type.
    #[inline]
    pub fn bits(self) -> u32 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::StartGroup => 3,
            WireType::EndGroup => 4,
            WireType::Fixed32 => 5,
        }
    }

    /// A short name for error messages.
    pub fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "64-bit",
            WireType::Len => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::Fixed32 => "32-bit",
        }
    }
}

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The buffer ended inside the varint.
    Truncated,
    /// More than 10 bytes, or a 10th byte above 1.
    Overlong,
}

/// Reads a varint at `*pos`, advancing `*pos` past it.
#[inline]
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    // Fast path: one byte, the common case for tags, small numbers and lengths.
    if let Some(&b) = buf.get(*pos) {
        if b < 0x80 {
            *pos += 1;
            return Ok(u64::from(b));
        }
    }
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(*pos + i) else {
            return Err(VarintError::Truncated);
        };
        if i == 9 && b > 1 {
            return Err(VarintError::Overlong);
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            *pos += i + 1;
            return Ok(value);
        }
    }
    Err(VarintError::Overlong)
}

/// Number of bytes the varint encoding of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // ceil(significant bits / 7), with 0 taking one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the varint encoding of `v`.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a tag for field `number` with wire type `wt`.
#[inline]
pub fn put_tag(out: &mut Vec<u8>, number: u32, wt: WireType) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wt.bits()));
}

/// Zigzag-encodes a signed 64-bit value.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Zigzag-decodes a 64-bit value.
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_and_lengths() {
        for v in [0u64, 1, 127, 128, 300, 16383, 16384, u32::MAX as u64, i64::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn varint_errors() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        assert_eq!(pos, 0);
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
        let eleven = [0xff; 11];
        assert_eq!(read_varint(&eleven, &mut pos), Err(VarintError::Overlong));
        let mut tenth_too_big = [0xff; 10];
        tenth_too_big[9] = 0x02;
        assert_eq!(read_varint(&tenth_too_big, &mut pos), Err(VarintError::Overlong));
    }

    #[test]
    fn zigzag_matches_the_spec_table() {
        for (v, z) in [(0i64, 0u64), (-1, 1), (1, 2), (-2, 3), (i64::MAX, u64::MAX - 1), (i64::MIN, u64::MAX)] {
            assert_eq!(zigzag(v), z);
            assert_eq!(unzigzag(z), v);
        }
    }

    #[test]
    fn wire_type_bits() {
        for b in 0..8u64 {
            match WireType::from_bits(b) {
                Some(wt) => assert_eq!(u64::from(wt.bits()), b),
                None => assert!(b == 6 || b == 7),
            }
        }
    }
}
