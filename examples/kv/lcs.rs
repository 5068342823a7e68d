//! LCS: the longest common subsequence of two strings, by the textbook
//! dynamic-programming table, answer for answer as Redis's `lcsCommand`
//! (the string itself, its length, or the matching ranges with IDX).
//!
//! The table has a cell for every pair of positions, so its memory is
//! the product of the two lengths: two 8 MiB strings would need 256 TB.
//! Redis refuses a table past `proto-max-bulk-len`; here past
//! [`MAX_LCS_TABLE`], before it is allocated, which also bounds the time
//! the loop spends filling it.

use crate::command::{Call, SYNTAX};
use crate::number::{redis_int, NOT_AN_INTEGER};
use crate::resp::reply;
use crate::strings::{string, MAX_VALUE};

/// The largest table LCS may build, in bytes (4 per cell). Redis bounds
/// it by `proto-max-bulk-len`; here [`MAX_VALUE`]: 2M cells, a few
/// milliseconds of the loop.
const MAX_LCS_TABLE: usize = MAX_VALUE;

/// LCS a b [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest common
/// subsequence of two strings, by the textbook table (Redis's `lcsCommand`,
/// answer for answer), refused past [`MAX_LCS_TABLE`].
pub fn lcs(c: &mut Call<'_, '_>, args: &[&[u8]]) {
    let db = c.ks.db(c.client.db);
    let (Ok(a), Ok(b)) = (string(db, c.now, args[1]), string(db, c.now, args[2])) else {
        return reply::error(
            &mut c.out.buf,
            "The specified keys must contain string values",
        );
    };
    let (a, b) = (
        a.map_or(&[][..], Vec::as_slice),
        b.map_or(&[][..], Vec::as_slice),
    );
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut i = 3;
    while i < args.len() {
        let word = args[i];
        let more = i + 1 < args.len();
        if word.eq_ignore_ascii_case(b"IDX") {
            idx = true;
        } else if word.eq_ignore_ascii_case(b"LEN") {
            len_only = true;
        } else if word.eq_ignore_ascii_case(b"WITHMATCHLEN") {
            with_len = true;
        } else if word.eq_ignore_ascii_case(b"MINMATCHLEN") && more {
            let Some(n) = redis_int(args[i + 1]) else {
                return reply::error(&mut c.out.buf, NOT_AN_INTEGER);
            };
            min_len = usize::try_from(n).unwrap_or(0);
            i += 1;
        } else {
            return reply::error(&mut c.out.buf, SYNTAX);
        }
        i += 1;
    }
    if len_only && idx {
        return reply::error(
            &mut c.out.buf,
            "If you want both the length and indexes, please just use IDX.",
        );
    }
    let cells = (a.len() + 1).saturating_mul(b.len() + 1);
    if cells.saturating_mul(4) > MAX_LCS_TABLE {
        return reply::error(
            &mut c.out.buf,
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    let found = Lcs::new(a, b);
    let out = &mut c.out.buf;
    if len_only {
        return reply::integer(out, found.len() as i64);
    }
    let (common, ranges) = found.walk(a, b);
    if !idx {
        return reply::bulk(out, &common);
    }
    let ranges: Vec<_> = ranges
        .into_iter()
        .filter(|r| min_len == 0 || r.len() >= min_len)
        .collect();
    reply::array_len(out, 4);
    reply::bulk(out, b"matches");
    reply::array_len(out, ranges.len());
    for r in &ranges {
        reply::array_len(out, 2 + usize::from(with_len));
        for (start, end) in [(r.a, r.a + r.len() - 1), (r.b, r.b + r.len() - 1)] {
            reply::array_len(out, 2);
            reply::integer(out, start as i64);
            reply::integer(out, end as i64);
        }
        if with_len {
            reply::integer(out, r.len() as i64);
        }
    }
    reply::bulk(out, b"len");
    reply::integer(out, found.len() as i64);
}

/// LCS's table: `cell(i, j)` is the LCS length of `a[..i]` and `b[..j]`.
struct Lcs {
    table: Vec<u32>,
    width: usize,
    rows: usize,
}

/// A run of matching bytes: from `a` in the first string and `b` in the
/// second, `end - a` long.
struct Range {
    a: usize,
    b: usize,
    end: usize,
}

impl Range {
    fn len(&self) -> usize {
        self.end - self.a
    }
}

impl Lcs {
    fn new(a: &[u8], b: &[u8]) -> Lcs {
        let width = b.len() + 1;
        let mut table = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                table[i * width + j] = if a[i - 1] == b[j - 1] {
                    table[(i - 1) * width + j - 1] + 1
                } else {
                    table[(i - 1) * width + j].max(table[i * width + j - 1])
                };
            }
        }
        Lcs {
            table,
            width,
            rows: a.len() + 1,
        }
    }

    fn cell(&self, i: usize, j: usize) -> u32 {
        self.table[i * self.width + j]
    }

    fn len(&self) -> u32 {
        self.cell(self.rows - 1, self.width - 1)
    }

    /// Walks back from the end: the common bytes, and the matching runs
    /// from last to first (the order Redis reports them in).
    fn walk(&self, a: &[u8], b: &[u8]) -> (Vec<u8>, Vec<Range>) {
        let mut common = Vec::with_capacity(self.len() as usize);
        let mut ranges: Vec<Range> = Vec::new();
        let mut current: Option<Range> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            if a[i - 1] == b[j - 1] {
                common.push(a[i - 1]);
                match &mut current {
                    // Contiguous with the run so far: extend it backwards.
                    Some(r) if r.a == i && r.b == j => {
                        r.a -= 1;
                        r.b -= 1;
                    }
                    _ => {
                        ranges.extend(current.take());
                        current = Some(Range {
                            a: i - 1,
                            b: j - 1,
                            end: i,
                        });
                    }
                }
                i -= 1;
                j -= 1;
            } else {
                if self.cell(i - 1, j) > self.cell(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                ranges.extend(current.take());
            }
        }
        ranges.extend(current.take());
        common.reverse();
        (common, ranges)
    }
}
