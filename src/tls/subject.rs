//! The subject of a peer's certificate, as text (RFC 4514: `CN=alice,O=Example`),
//! for a handler that authorizes by it after mutual TLS.
//!
//! rustls checks the certificate (its chain to a configured CA, its
//! dates, its use) but does not parse its names for the program; a parser
//! crate would be far more than this needs. A certificate is DER: nested
//! tag, length, contents. The subject is the sixth element of the
//! to-be-signed part (after an optional version, the serial number, the
//! signature algorithm, the issuer and the validity), a sequence of sets
//! of (attribute type, value) pairs. Anything unexpected gives `None`:
//! the certificate was already verified, so this never decides trust.

/// The subject of a DER certificate, most specific part first, values
/// escaped as RFC 4514 says (so `CN=a\,O=b` cannot pass for two parts).
pub(crate) fn subject(cert: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if let (VERSION, _, after) = element(rest)? {
        rest = after;
    }
    // The serial number, the signature algorithm, the issuer, the validity.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut names, _) = element(rest)? else {
        return None;
    };
    let mut parts = Vec::new();
    while !names.is_empty() {
        let (SET, mut set, after) = element(names)? else {
            return None;
        };
        names = after;
        let mut rdn = Vec::new();
        while !set.is_empty() {
            let (SEQUENCE, pair, after) = element(set)? else {
                return None;
            };
            set = after;
            let (OID, oid, encoded) = element(pair)? else {
                return None;
            };
            let (tag, value, after) = element(encoded)?;
            if !after.is_empty() {
                return None; // a pair is a type and one value
            }
            rdn.push(format!("{}={}", attribute(oid), text(tag, value, encoded)));
        }
        parts.push(rdn.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT Version`.
const VERSION: u8 = 0xa0;

/// One DER element at the front of `der`: its tag, its contents, and what
/// follows it.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the next 1 to 4 bytes are the length.
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A value as RFC 4514 writes it: a string type as escaped text; any
/// other type, or a string that is not UTF-8, as `#` and the hex of its
/// whole encoding, so two different values never print the same.
fn text(tag: u8, value: &[u8], encoded: &[u8]) -> String {
    // UTF8String, PrintableString, IA5String, TeletexString (taken as
    // Latin-1 by no one here: only if it is ASCII).
    let string = matches!(tag, 0x0c | 0x13 | 0x16) || (tag == 0x14 && value.is_ascii());
    match std::str::from_utf8(value) {
        Ok(text) if string => escape(text),
        _ => format!("#{}", hex(encoded)),
    }
}

/// The short name RFC 4514 gives an attribute type, or its dotted OID.
fn attribute(oid: &[u8]) -> String {
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return dotted(oid).unwrap_or_else(|| "#".to_string() + &hex(oid)),
    };
    short.to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OID as `2.5.4.42`; `None` for one that is cut short or has an arc
/// past 64 bits.
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs = Vec::new();
    let mut value: u64 = 0;
    for &b in oid {
        value = value.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    if oid.last().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let arcs: Vec<String> = arcs.iter().map(u64::to_string).collect();
    Some(arcs.join("."))
}

/// Text as RFC 4514 writes it: the special characters escaped with a
/// backslash, characters that are not printable as `\XX`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let mut bytes = [0; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(dn: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in dn {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn names_come_most_specific_first() {
        let der = cert_with(&[
            (rcgen::DnType::CountryName, "NL"),
            (rcgen::DnType::OrganizationName, "Example"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject(&der).as_deref(), Some("CN=alice,O=Example,C=NL"));
    }

    #[test]
    fn special_characters_cannot_forge_a_part() {
        let der = cert_with(&[(rcgen::DnType::CommonName, "a,O=admin")]);
        assert_eq!(subject(&der).as_deref(), Some("CN=a\\,O\\=admin"));
        let der = cert_with(&[(rcgen::DnType::CommonName, " #x\n")]);
        assert_eq!(subject(&der).as_deref(), Some("CN=\\ #x\\0A"));
    }

    #[test]
    fn a_value_that_is_not_utf8_text_is_written_as_hex() {
        // A BMPString (UTF-16): its whole encoding, tag 0x1e, in hex.
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            rcgen::DnValue::BmpString(rcgen::BmpString::try_from("ab").unwrap()),
        );
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(subject(&der).as_deref(), Some("CN=#1e0400610062"));
    }

    #[test]
    fn unknown_attributes_are_dotted_and_garbage_is_none() {
        let der = cert_with(&[(rcgen::DnType::CustomDnType(vec![2, 5, 4, 42]), "Alice")]);
        assert_eq!(subject(&der).as_deref(), Some("2.5.4.42=Alice"));
        let der = cert_with(&[(rcgen::DnType::CommonName, "bob")]);
        for cut in 0..der.len() {
            // Any prefix is refused or parsed, never a panic.
            let _ = subject(&der[..cut]);
        }
        assert_eq!(subject(b""), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
