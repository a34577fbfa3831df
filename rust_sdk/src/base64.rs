//! Standard base64 (RFC 4648 §4, `+/` and `=` padding) for bodies that
//! travel as `body_base64` in frames. Private: a few dozen lines instead of
//! one more dependency in every handler build.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// 0..=63 for an alphabet byte, `INVALID` otherwise.
const INVALID: u8 = 0xff;
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Encodes with padding.
pub(crate) fn encode(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        out.extend_from_slice(&[
            ALPHABET[(n >> 18) as usize & 63],
            ALPHABET[(n >> 12) as usize & 63],
            ALPHABET[(n >> 6) as usize & 63],
            ALPHABET[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = (a as u32) << 16;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (a as u32) << 16 | (b as u32) << 8;
            out.extend_from_slice(&[
                ALPHABET[(n >> 18) as usize & 63],
                ALPHABET[(n >> 12) as usize & 63],
                ALPHABET[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
    // Only alphabet bytes were pushed.
    String::from_utf8(out).expect("base64 output is ASCII")
}

/// Decodes standard base64; the `=` padding may be omitted. `None` for any
/// other character (whitespace included) or an impossible length.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let data = strip_padding(bytes)?;
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let n = sextet(c[0])? << 18 | sextet(c[1])? << 12 | sextet(c[2])? << 6 | sextet(c[3])?;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    match *chunks.remainder() {
        [a, b] => {
            let n = sextet(a)? << 18 | sextet(b)? << 12;
            out.push((n >> 16) as u8);
        }
        [a, b, c] => {
            let n = sextet(a)? << 18 | sextet(b)? << 12 | sextet(c)? << 6;
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8]);
        }
        _ => {}
    }
    Some(out)
}

/// Whether `text` is padded standard base64 as the gateway's strict decoder
/// wants it: a length that is a multiple of 4, alphabet characters, and at
/// most two `=` at the end.
pub(crate) fn is_valid_padded(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() & 3 != 0 {
        return false;
    }
    match strip_padding(bytes) {
        Some(data) => data.iter().all(|&b| DECODE[b as usize] != INVALID),
        None => false,
    }
}

/// The input without its trailing `=` (at most two, and only if the rest
/// is not empty-and-padded nonsense).
fn strip_padding(bytes: &[u8]) -> Option<&[u8]> {
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 || (pad > 0 && bytes.len() & 3 != 0) {
        return None;
    }
    Some(&bytes[..bytes.len() - pad])
}

fn sextet(b: u8) -> Option<u32> {
    match DECODE[b as usize] {
        INVALID => None,
        v => Some(v as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes());
            assert!(is_valid_padded(encoded), "{encoded}");
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(decode(unpadded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        for len in 0..all.len() {
            let e = encode(&all[..len]);
            assert!(is_valid_padded(&e));
            assert_eq!(decode(&e).unwrap(), &all[..len]);
        }
        assert_eq!(encode(&[0xfb, 0xff, 0xfe]), "+//+");
    }

    #[test]
    fn invalid_input() {
        for bad in [
            "Z", "Zg=", "Zg===", "Z===", "Zm9v\n", "Zm 9v", "Zm9-", "Zm9_", "=Zm9", "Zm=v",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
            assert!(!is_valid_padded(bad), "{bad:?}");
        }
        // unpadded is fine for decoding, not for the strict check
        assert!(decode("Zg").is_some());
        assert!(!is_valid_padded("Zg"));
        assert!(!is_valid_padded("hello world"));
    }
}
