//! Cutting one stream into reads, the way a socket may deliver it.

/// `stream` cut at `cuts` (each taken modulo the stream's length, so any
/// value is a valid cut): the pieces, in order, which together are the
/// stream. Empty pieces are dropped: a read never returns 0 bytes but at
/// the end.
pub fn chunks<'a>(stream: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| usize::from(c) % (stream.len() + 1))
        .collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

/// Reads a fuzz input laid out as `[n] [n cuts, 2 bytes each, big-endian]
/// [stream...]` (n taken modulo 16): a seed is its stream behind a 0 byte,
/// and the fuzzer learns to move the cuts on its own.
pub fn input(data: &[u8]) -> (Vec<u16>, &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let n = usize::from(n % 16).min(rest.len() / 2);
    let (cuts, stream) = rest.split_at(2 * n);
    let cuts = cuts
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    (cuts, stream)
}
