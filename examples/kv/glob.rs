//! Redis's glob patterns (KEYS and SCAN's MATCH), matched without
//! backtracking.
//!
//! The language is Redis's `stringmatchlen`: `*` any run of bytes, `?` any
//! one byte, `[abc]`, `[a-z]` and `[^...]` one byte in (or not in) a
//! class, `\x` the byte `x`; everything else itself. Its corners are kept
//! too: a class that is never closed runs to the end of the pattern, a
//! range may be written backwards (`[z-a]`), its ends compare as C's
//! signed `char` (so `[a-\xff]` is the bytes from `0xff`, that is -1, up
//! to `a`), a `\` at the very end is itself, and an empty key matches
//! only the empty pattern (KEYS and SCAN answer `*` alone without
//! matching, so they still list an empty key).
//!
//! # Cost
//!
//! Redis matches recursively, trying each `*` at every position; without
//! care that is exponential (`*a*a*a*a*a*b` against a long run of `a`),
//! and Redis bounds it with a flag that stops retrying once a tail has
//! failed everywhere, and a nesting limit. Here the pattern is compiled
//! once into its *segments*, the runs of one-byte tokens between stars,
//! and matched left to right: the first segment must match at the start,
//! the last at the end, and each one between is placed at its leftmost
//! fit after the one before. Leftmost is always right (a later fit only
//! leaves less room for the rest), so no segment is ever tried again:
//! matching costs at most the pattern's length times the key's, and
//! usually the key's length, with no recursion to nest.

/// One pattern token that matches exactly one byte.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Byte(u8),
    Any,
    /// A set of bytes, one bit each.
    Class([u64; 4]),
}

impl Token {
    fn matches(&self, b: u8) -> bool {
        match self {
            Token::Byte(x) => *x == b,
            Token::Any => true,
            Token::Class(bits) => bits[usize::from(b >> 6)] >> (b & 63) & 1 == 1,
        }
    }
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Glob {
    /// The runs of tokens between stars: `stars + 1` of them, some
    /// perhaps empty.
    segments: Vec<Vec<Token>>,
    /// The pattern was empty (it then matches only the empty key).
    empty: bool,
}

impl Glob {
    pub fn new(pattern: &[u8]) -> Glob {
        let mut segments = vec![Vec::new()];
        let mut i = 0;
        while i < pattern.len() {
            let token = match pattern[i] {
                b'*' => {
                    // Runs of stars are one star.
                    if segments.last().is_some_and(|s| !s.is_empty()) || segments.len() == 1 {
                        segments.push(Vec::new());
                    }
                    i += 1;
                    continue;
                }
                b'?' => {
                    i += 1;
                    Token::Any
                }
                b'[' => {
                    let (class, next) = class(pattern, i + 1);
                    i = next;
                    class
                }
                b'\\' if i + 1 < pattern.len() => {
                    i += 2;
                    Token::Byte(pattern[i - 1])
                }
                b => {
                    i += 1;
                    Token::Byte(b)
                }
            };
            if let Some(segment) = segments.last_mut() {
                segment.push(token);
            }
        }
        Glob {
            segments,
            empty: pattern.is_empty(),
        }
    }

    /// Whether `key` matches, in at most `pattern × key` steps.
    pub fn matches(&self, key: &[u8]) -> bool {
        if key.is_empty() {
            return self.empty;
        }
        let (first, rest) = match self.segments.split_first() {
            Some(split) => split,
            None => return false,
        };
        let Some((last, middle)) = rest.split_last() else {
            // No star: the one segment is the whole key.
            return first.len() == key.len() && fits(first, key);
        };
        if first.len() + last.len() > key.len()
            || !fits(first, key)
            || !fits(last, &key[key.len() - last.len()..])
        {
            return false;
        }
        let end = key.len() - last.len();
        let mut at = first.len();
        for segment in middle {
            match find(segment, &key[at..end]) {
                Some(found) => at += found + segment.len(),
                None => return false,
            }
        }
        true
    }
}

/// Whether `tokens` match the start of `bytes` (which is long enough).
fn fits(tokens: &[Token], bytes: &[u8]) -> bool {
    tokens.iter().zip(bytes).all(|(t, &b)| t.matches(b))
}

/// Where `tokens` first match in `bytes`.
fn find(tokens: &[Token], bytes: &[u8]) -> Option<usize> {
    let last_start = bytes.len().checked_sub(tokens.len())?;
    (0..=last_start).find(|&i| fits(tokens, &bytes[i..]))
}

/// A class after its `[`: the token and where the pattern goes on. As
/// `stringmatchlen` reads it: `^` first negates; `\x` is `x`; `a-z` is a
/// range if a byte follows the `-` (even `]`); an unclosed class ends with
/// the pattern.
fn class(pattern: &[u8], mut i: usize) -> (Token, usize) {
    let mut bits = [0u64; 4];
    let mut add = |b: u8| bits[usize::from(b >> 6)] |= 1 << (b & 63);
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    loop {
        let left = pattern.len().saturating_sub(i);
        match pattern.get(i) {
            None => break,
            Some(b'\\') if left >= 2 => {
                add(pattern[i + 1]);
                i += 2;
            }
            Some(b']') => {
                i += 1;
                break;
            }
            Some(&start) if left >= 3 && pattern[i + 1] == b'-' => {
                // C's `char` is signed here: compare as i8.
                let (a, b) = (start as i8, pattern[i + 2] as i8);
                let (low, high) = (a.min(b), a.max(b));
                for c in low..=high {
                    add(c as u8);
                }
                i += 3;
            }
            Some(&b) => {
                add(b);
                i += 1;
            }
        }
    }
    if negate {
        for word in &mut bits {
            *word = !*word;
        }
    }
    (Token::Class(bits), i)
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn glob(pattern: &str, key: &str) -> bool {
        Glob::new(pattern.as_bytes()).matches(key.as_bytes())
    }

    #[test]
    fn literals_and_question_marks() {
        assert!(glob("hello", "hello"));
        assert!(!glob("hello", "hell"));
        assert!(!glob("hello", "helloo"));
        assert!(glob("h?llo", "hallo"));
        assert!(!glob("h?llo", "hllo"));
    }

    #[test]
    fn stars_match_any_run_including_none() {
        assert!(glob("*", "anything"));
        assert!(glob("h*o", "ho"));
        assert!(glob("h*o", "hello"));
        assert!(!glob("h*o", "help"));
        assert!(glob("*llo", "hello"));
        assert!(glob("he*", "hello"));
        assert!(glob("**a***", "banana"));
        assert!(glob("*a*a*a*", "banana"));
        assert!(!glob("*a*a*a*a*", "banana"));
        assert!(glob("a*b*c", "abc"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "acb"));
        // The first and last segments are anchored and may not overlap.
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("ab*ba", "abba"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(glob("h[ae]llo", "hello"));
        assert!(glob("h[ae]llo", "hallo"));
        assert!(!glob("h[ae]llo", "hillo"));
        assert!(glob("h[^e]llo", "hallo"));
        assert!(!glob("h[^e]llo", "hello"));
        assert!(glob("h[a-b]llo", "hbllo"));
        assert!(glob("h[b-a]llo", "hallo"), "a backwards range");
        assert!(!glob("h[a-b]llo", "hcllo"));
        assert!(glob("[\\]]", "]"));
        assert!(glob("[a-]", "]"), "`a-]` is the range from ] to a");
        assert!(glob("x[abc", "xb"), "an unclosed class ends the pattern");
        assert!(!glob("x[abc", "xbc"));
    }

    #[test]
    fn range_ends_compare_as_signed_chars() {
        let g = super::Glob::new(b"[a-\xff]");
        assert!(g.matches(b"\xff"));
        assert!(g.matches(b"0"));
        assert!(!g.matches(b"b"));
        assert!(!g.matches(b"\x80"));
    }

    #[test]
    fn escapes() {
        assert!(glob("\\*", "*"));
        assert!(!glob("\\*", "a"));
        assert!(glob("a\\?", "a?"));
        assert!(!glob("a\\?", "ab"));
        assert!(glob("a\\", "a\\"), "a trailing backslash is itself");
    }

    #[test]
    fn an_empty_key_matches_only_the_empty_pattern() {
        assert!(glob("", ""));
        assert!(!glob("*", ""));
        assert!(!glob("", "a"));
    }

    #[test]
    fn a_pathological_pattern_costs_a_pass_not_an_explosion() {
        let key = "a".repeat(100_000);
        let start = std::time::Instant::now();
        for _ in 0..100 {
            assert!(!glob("*a*a*a*a*a*a*a*a*a*a*a*a*b", &key));
            assert!(!glob("*a*a*a*a*a*a*a*a*a*a*a*a*b*", &key));
            assert!(glob("*a*a*a*a*a*a*a*a*a*a*a*a*", &key));
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    /// Redis's recursive matcher, transcribed, as the reference for the
    /// segment matcher on many small patterns and keys.
    fn reference(p: &[u8], s: &[u8]) -> bool {
        if s.is_empty() {
            return p.is_empty();
        }
        fn go(mut p: &[u8], mut s: &[u8]) -> bool {
            while !p.is_empty() && !s.is_empty() {
                match p[0] {
                    b'*' => {
                        while p.len() > 1 && p[1] == b'*' {
                            p = &p[1..];
                        }
                        if p.len() == 1 {
                            return true;
                        }
                        while !s.is_empty() {
                            if go(&p[1..], s) {
                                return true;
                            }
                            s = &s[1..];
                        }
                        return false;
                    }
                    b'?' => s = &s[1..],
                    b'[' => {
                        p = &p[1..];
                        let not = p.first() == Some(&b'^');
                        if not {
                            p = &p[1..];
                        }
                        let mut matched = false;
                        loop {
                            if p.first() == Some(&b'\\') && p.len() >= 2 {
                                p = &p[1..];
                                matched |= p[0] == s[0];
                            } else if p.first() == Some(&b']') || p.is_empty() {
                                break;
                            } else if p.len() >= 3 && p[1] == b'-' {
                                let (mut a, mut b) = (p[0] as i8, p[2] as i8);
                                if a > b {
                                    std::mem::swap(&mut a, &mut b);
                                }
                                let c = s[0] as i8;
                                p = &p[2..];
                                matched |= c >= a && c <= b;
                            } else {
                                matched |= p[0] == s[0];
                            }
                            p = &p[1..];
                        }
                        if not {
                            matched = !matched;
                        }
                        if !matched {
                            return false;
                        }
                        s = &s[1..];
                        if p.is_empty() {
                            // The unclosed class consumed the pattern.
                            return s.is_empty();
                        }
                    }
                    b'\\' if p.len() >= 2 => {
                        p = &p[1..];
                        if p[0] != s[0] {
                            return false;
                        }
                        s = &s[1..];
                    }
                    c => {
                        if c != s[0] {
                            return false;
                        }
                        s = &s[1..];
                    }
                }
                p = &p[1..];
                if s.is_empty() {
                    while p.first() == Some(&b'*') {
                        p = &p[1..];
                    }
                    break;
                }
            }
            p.is_empty() && s.is_empty()
        }
        go(p, s)
    }

    #[test]
    fn agrees_with_redis_on_every_small_case() {
        let alphabet = [b'a', b'b', b'*', b'?', b'[', b']', b'^', b'-', b'\\'];
        let keys: Vec<Vec<u8>> = (0..4u32)
            .flat_map(|len| {
                (0..3usize.pow(len)).map(move |mut n| {
                    (0..len)
                        .map(|_| {
                            let b = [b'a', b'b', b']'][n % 3];
                            n /= 3;
                            b
                        })
                        .collect()
                })
            })
            .collect();
        let mut checked = 0;
        for len in 0..=4u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let pattern: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[n % alphabet.len()];
                        n /= alphabet.len();
                        b
                    })
                    .collect();
                let glob = Glob::new(&pattern);
                for key in &keys {
                    assert_eq!(
                        glob.matches(key),
                        reference(&pattern, key),
                        "pattern {:?} key {:?}",
                        String::from_utf8_lossy(&pattern),
                        String::from_utf8_lossy(key)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 100_000);
    }
}
