//! Salesforce record ids: a 3-character key prefix naming the object, 12 more case-sensitive
//! characters, and a 3-character suffix that encodes the case of the first 15 so the 18-character
//! form survives case-insensitive handling.

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const SUFFIX: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// The 18-character id number `n` of the object with `prefix` (`500` for Case).
pub(crate) fn make(prefix: &str, n: u64) -> String {
    // Prefix, a pod-like "5g0000", then the counter in base 62 (6 digits).
    let mut digits = [b'0'; 6];
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let id15 = format!(
        "{prefix}5g0000{}",
        std::str::from_utf8(&digits).unwrap_or("000000")
    );
    with_suffix(&id15)
}

fn with_suffix(id15: &str) -> String {
    let mut out = id15.to_string();
    for chunk in id15.as_bytes().chunks(5) {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(SUFFIX[bits] as char);
    }
    out
}

/// The canonical 18-character form of a 15- or 18-character id, or `None` when it is not an
/// id at all. An 18-character id is read case-insensitively, its suffix restoring the case.
pub(crate) fn normalize(raw: &str) -> Option<String> {
    let raw = raw.trim();
    if !raw.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    match raw.len() {
        15 => Some(with_suffix(raw)),
        18 => {
            let (body, suffix) = raw.split_at(15);
            let mut restored = Vec::with_capacity(15);
            for (chunk, code) in body.as_bytes().chunks(5).zip(suffix.bytes()) {
                let bits = SUFFIX
                    .iter()
                    .position(|s| *s == code.to_ascii_uppercase())?;
                for (i, c) in chunk.iter().enumerate() {
                    restored.push(if bits & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    });
                }
            }
            let body = String::from_utf8(restored).ok()?;
            Some(with_suffix(&body))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = make("500", 3843);
        assert_eq!(id.len(), 18);
        assert_eq!(&id[..15], "5005g00000000zz");
        assert_eq!(normalize(&id), Some(id.clone()));
        assert_eq!(normalize(&id[..15]), Some(id.clone()));
        assert_eq!(normalize(&id.to_ascii_lowercase()), Some(id.clone()));
        // A well-known real id and its suffix.
        assert_eq!(
            normalize("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
        assert_eq!(normalize("abc"), None);
        assert_eq!(normalize("500-5g0000000001"), None);
    }
}
