//! Numbers as Redis reads and writes them. Every number a client sends
//! goes through here, and each reader says which Redis function it
//! follows, because the tests (and clients) depend on the exact edges:
//! `+5`, ` 5`, `05` and `9223372036854775808` are not integers to Redis,
//! `1e400` is not a float here, and so on.

/// Redis's answer to a number that is not one.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
/// Redis's answer to a float that is not one.
pub const NOT_A_FLOAT: &str = "value is not a valid float";

/// Longest float text Redis reads (`MAX_LONG_DOUBLE_CHARS`).
const MAX_FLOAT_TEXT: usize = 5 * 1024;

/// A signed 64-bit integer the way Redis reads one (`string2ll`): the
/// same reader as the request's lengths.
pub use crate::resp::redis_int;

/// An `int` as Redis's `getIntFromObjectOrReply` reads one: `Err` is the
/// message (`custom`, if given, for both failures).
pub fn redis_i32(s: &[u8], custom: Option<&'static str>) -> Result<i32, &'static str> {
    let n = redis_int(s).ok_or(custom.unwrap_or(NOT_AN_INTEGER))?;
    i32::try_from(n).map_err(|_| {
        custom.unwrap_or("value is out of range, value must between -2147483648 and 2147483647")
    })
}

/// A float the way Redis reads one (`string2ld`): the whole text is a
/// number `strtod` would take, with nothing before or after it, and not
/// NaN. Read as an `f64`, so a finite number past its range (`1e400`),
/// or a non-zero one below it (`1e-400`), is refused, as Redis's
/// `string2d` refuses them; `inf` is a float (the sum is then refused).
pub fn redis_float(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s.len() >= MAX_FLOAT_TEXT || s[0].is_ascii_whitespace() || s[0] == 0x0b {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let value: f64 = text.parse().ok()?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let named = text
        .bytes()
        .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E'));
    let overflowed = value.is_infinite() && !named;
    let underflowed = value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    if value.is_nan() || overflowed || underflowed {
        return None;
    }
    Some(value)
}

/// A finite float written as INCRBYFLOAT writes it: plain decimal
/// notation (no exponent), no trailing zeros, no `-0`, and the fewest
/// digits that read back as the same `f64`, so what is stored is exactly
/// what was computed (`x + -x` is then `0`, however `x` was written).
///
/// Redis computes in 80-bit `long double` and writes 17 decimals, which
/// hides the last bits of arithmetic noise that an `f64` shows:
/// `0.1 + 0.2` is `0.3` there and `0.30000000000000004` here. Numbers
/// as typed are written back as typed in both.
pub fn format_float(value: f64) -> String {
    debug_assert!(value.is_finite(), "{value} is not finite");
    if value == 0.0 || !value.is_finite() {
        return "0".into();
    }
    // `d.ddde<exp>`, the shortest digits that round-trip.
    let scientific = format!("{:e}", value.abs());
    let (mantissa, exp) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut text = String::new();
    if value < 0.0 {
        text.push('-');
    }
    if exp < 0 {
        text.push_str("0.");
        text.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        text.push_str(&digits);
    } else {
        let whole = exp as usize + 1;
        if whole >= digits.len() {
            text.push_str(&digits);
            text.extend(std::iter::repeat_n('0', whole - digits.len()));
        } else {
            text.push_str(&digits[..whole]);
            text.push('.');
            text.push_str(&digits[whole..]);
        }
    }
    text
}

/// A SCAN cursor as Redis reads one (`strtoul`): optional sign, digits,
/// nothing after; `-n` wraps as C's does; empty is 0. `None` is "invalid
/// cursor".
pub fn scan_cursor(s: &[u8]) -> Option<u64> {
    let (negative, digits) = match s.first() {
        None => return Some(0),
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if negative { n.wrapping_neg() } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_as_string2ll_reads_them() {
        assert_eq!(redis_int(b"0"), Some(0));
        assert_eq!(redis_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(redis_int(b"9223372036854775807"), Some(i64::MAX));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"05",
            b"+5",
            b" 5",
            b"5 ",
            b"1.0",
            b"9223372036854775808",
        ] {
            assert_eq!(redis_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_int_past_32_bits_has_its_own_message() {
        assert_eq!(redis_i32(b"-7", None), Ok(-7));
        assert_eq!(redis_i32(b"x", None), Err(NOT_AN_INTEGER));
        assert!(redis_i32(b"99999999999", None)
            .unwrap_err()
            .starts_with("value is out of range"));
        assert_eq!(redis_i32(b"99999999999", Some("custom")), Err("custom"));
    }

    #[test]
    fn floats_are_whole_finite_numbers() {
        assert_eq!(redis_float(b"1.5"), Some(1.5));
        assert_eq!(redis_float(b"-1e3"), Some(-1000.0));
        assert_eq!(redis_float(b"+inf"), Some(f64::INFINITY));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"1\x002",
            b"nan",
            b"abc",
            b"1e400",
            b"1e-400",
            b"1.5.5",
        ] {
            assert_eq!(redis_float(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn floats_are_written_in_plain_decimals_that_read_back_the_same() {
        for (value, text) in [
            (1.0, "1"),
            (1.25, "1.25"),
            (-0.1, "-0.1"),
            (1.0 - 1.1, "-0.10000000000000009"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1.0 / 41.0, "0.024390243902439025"),
            (17179869185.5, "17179869185.5"),
            (34359738368.0, "34359738368"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "0.00000015"),
            (-0.0, "0"),
        ] {
            assert_eq!(format_float(value), text, "{value}");
            assert_eq!(redis_float(text.as_bytes()), Some(value + 0.0), "{text}");
        }
    }

    #[test]
    fn cursors_are_read_as_strtoul_reads_them() {
        assert_eq!(scan_cursor(b"0"), Some(0));
        assert_eq!(scan_cursor(b""), Some(0));
        assert_eq!(scan_cursor(b"+5"), Some(5));
        assert_eq!(scan_cursor(b"-1"), Some(u64::MAX));
        for bad in [&b"x"[..], b" 1", b"1 ", b"+", b"18446744073709551616"] {
            assert_eq!(scan_cursor(bad), None, "{bad:?}");
        }
    }
}
