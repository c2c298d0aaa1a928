//! One pass over a body that both proves it is exactly one well-formed JSON text and picks out
//! the few fields a source needs (its action, delivery id, timestamp), without building a
//! value tree.
//!
//! The grammar is RFC 8259's: numbers of any magnitude and precision are valid (the input is
//! passed on as bytes, never converted), and lone surrogates in `\u` escapes are refused, so
//! that every string is valid Unicode. A picked field that appears twice in one object is
//! refused too: readers disagree on which copy counts (the pipeline would read the first, most
//! agents the last). Nesting is limited to [`MAX_NESTING`] with an explicit stack, never
//! recursion. Strings are skipped sixteen bytes at a time with SIMD comparisons, and are the
//! only place UTF-8 is checked (nothing else may hold a byte outside ASCII); escaped strings that
//! are picked out are unescaped with `serde_json`. Compact JSON takes the fewest steps:
//! whitespace is looked for only where the next byte is not the one compact JSON has there. The
//! scan is counted by `benches/scripts/profile.sh` and timed by `benches/pipeline.rs` beside
//! serde_json, simd-json and sonic-rs.
//!
//! In a body the scan has validated, [`string_end`] and [`value_end`] find where a value ends
//! without reading it: the rules' reader skips with them what no rule reads.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use wide::u8x16;

/// Nesting deeper than this is refused, so a hostile body cannot exhaust anything.
pub(crate) const MAX_NESTING: usize = 128;
// The scanner's stacks are indexed by the depth's low byte.
const _: () = assert!(MAX_NESTING <= u8::MAX as usize);

/// At most this many fields can be picked out in one scan.
const MAX_FIELDS: usize = 8;

/// A field is at most this many keys deep.
pub(crate) const MAX_PATH_DEPTH: usize = 4;

/// A path of object keys from the top of the document, `&["event", "type"]`.
pub(crate) type FieldPath<'p> = &'p [&'p str];

/// A picked-out value: a string (borrowed from the body when it has no escapes), a number, or
/// anything else (which still counts as present).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'b> {
    Str(Cow<'b, str>),
    Number(f64),
    Other,
}

/// The fields found by [`scan`], the first occurrence of each.
#[derive(Debug)]
pub(crate) struct Fields<'b> {
    paths: &'b [FieldPath<'b>],
    values: [Option<Scalar<'b>>; MAX_FIELDS],
}

impl<'b> Fields<'b> {
    /// No fields at all, as for an empty body.
    pub(crate) fn empty() -> Fields<'static> {
        Fields {
            paths: &[],
            values: Default::default(),
        }
    }

    fn get(&self, path: &[&str]) -> Option<&Scalar<'b>> {
        let at = self.paths.iter().position(|wanted| *wanted == path)?;
        self.values[at].as_ref()
    }

    /// The string at `path`, if the field is there and is a string.
    pub(crate) fn str(&self, path: &[&str]) -> Option<&str> {
        match self.get(path)? {
            Scalar::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The number at `path`, if the field is there and is a number.
    pub(crate) fn number(&self, path: &[&str]) -> Option<f64> {
        match self.get(path)? {
            Scalar::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// Whether the field is there at all, whatever its value (`null` included).
    pub(crate) fn is_present(&self, path: &[&str]) -> bool {
        self.get(path).is_some()
    }
}

/// Why a body is not JSON, with a 1-based position (columns count characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) message: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

/// Validates `body` as exactly one JSON text (UTF-8, no trailing bytes, nesting at most
/// [`MAX_NESTING`]) and picks out the values at `paths`.
///
/// # Panics
///
/// When `paths` has more than eight entries or a path more than four keys, which the source
/// table never has.
pub(crate) fn scan<'b>(
    body: &'b [u8],
    paths: &'b [FieldPath<'b>],
) -> Result<Fields<'b>, JsonError> {
    scan_checking::<false>(body, paths)
}

/// [`scan`], and no object may hold any key twice, picked or not: what a trigger whose rules
/// read the body asks (the rules and the agent must never read different values). Only such
/// triggers pay for tracking every key.
pub(crate) fn scan_unique_keys<'b>(
    body: &'b [u8],
    paths: &'b [FieldPath<'b>],
) -> Result<Fields<'b>, JsonError> {
    scan_checking::<true>(body, paths)
}

/// The duplicate key that [`scan_unique_keys`] refuses.
const DUPLICATE_KEY: &str = "duplicate key: this object already has this key";

fn scan_checking<'b, const UNIQUE: bool>(
    body: &'b [u8],
    paths: &'b [FieldPath<'b>],
) -> Result<Fields<'b>, JsonError> {
    assert!(
        paths.len() <= MAX_FIELDS,
        "a source picks out at most eight fields"
    );
    assert!(
        paths.iter().all(|path| path.len() <= MAX_PATH_DEPTH),
        "a field is at most four keys deep"
    );
    let mut scanner = Scanner::<UNIQUE> {
        bytes: body,
        at: 0,
        paths,
        values: Default::default(),
        seen: [0; MAX_PATH_DEPTH + 1],
        open_keys: OpenKeys {
            // Enough for most bodies' objects without growing.
            keys: Vec::with_capacity(if UNIQUE { 64 } else { 0 }),
            ..OpenKeys::default()
        },
    };
    scanner
        .document()
        .map_err(|Problem { at, message }| locate(body, at, message))?;
    Ok(Fields {
        paths,
        values: scanner.values,
    })
}

/// The value of a number the scanner has read (ASCII digits, so always UTF-8); infinite beyond
/// `f64`'s range.
fn parse_f64(digits: &[u8]) -> f64 {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(f64::NAN)
}

/// How many bytes of a string [`special_bytes`] looks at in one go.
const LANES: usize = 16;

/// A bit for each byte of `chunk` that a string scan must stop at: `"`, `\\`, a control
/// character, and, when `stop_outside_ascii`, a byte outside ASCII. One SIMD comparison per kind
/// (SSE2 on x86-64, NEON on aarch64, plain code elsewhere).
#[inline(always)]
fn special_bytes(chunk: &[u8; LANES], stop_outside_ascii: bool) -> u32 {
    let bytes = u8x16::new(*chunk);
    let quote = bytes.simd_eq(u8x16::splat(b'"'));
    let backslash = bytes.simd_eq(u8x16::splat(b'\\'));
    // `max(byte, 0x1F) == 0x1F` is `byte <= 0x1F`, unsigned.
    let control = bytes.max(u8x16::splat(0x1F)).simd_eq(u8x16::splat(0x1F));
    let mut special = (quote | backslash | control).to_bitmask();
    if stop_outside_ascii {
        // The bitmask is each byte's top bit: set exactly for bytes outside ASCII.
        special |= bytes.to_bitmask();
    }
    special
}

/// A problem found at a byte offset; turned into a line and column only when reported.
struct Problem {
    at: usize,
    message: &'static str,
}

pub(crate) fn locate(body: &[u8], at: usize, message: &'static str) -> JsonError {
    let before = &body[..at.min(body.len())];
    let line = 1 + before.iter().filter(|&&byte| byte == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |at| at + 1);
    let column = 1 + String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count();
    JsonError {
        message: message.to_owned(),
        line,
        column,
    }
}

/// A problem at byte offset `at`.
#[cold]
fn problem<T>(at: usize, message: &'static str) -> Result<T, Problem> {
    Err(Problem { at, message })
}

/// The first byte at or after `at` that is not whitespace.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], at: usize) -> usize {
    // Compact JSON has none: one comparison says so for any byte above the space.
    if bytes.get(at).is_none_or(|&byte| byte > b' ') {
        return at;
    }
    whitespace_end(bytes, at)
}

/// The first byte at or after `at` that is not whitespace, looked for byte by byte.
#[inline(always)]
fn whitespace_end(bytes: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(at) {
        at += 1;
    }
    at
}

/// Where the string whose contents start at `start` ends (its closing quote), when it is plain
/// ASCII without escapes; otherwise `Err` with where the first byte needing attention is.
#[inline(always)]
fn plain_string_end(bytes: &[u8], start: usize) -> Result<usize, usize> {
    let stop = skip_plain_bytes(bytes, start, true);
    if bytes.get(stop) == Some(&b'"') {
        Ok(stop)
    } else {
        Err(stop)
    }
}

/// The first byte at or after `at` that needs attention inside a string, sixteen bytes at a
/// time: `"`, `\\`, a control character, and, when `stop_outside_ascii`, a byte outside ASCII;
/// or the end of the body.
#[inline(always)]
fn skip_plain_bytes(bytes: &[u8], mut at: usize, stop_outside_ascii: bool) -> usize {
    let Some(mut rest) = bytes.get(at..) else {
        return at;
    };
    while let Some((chunk, after)) = rest.split_first_chunk::<LANES>() {
        let special = special_bytes(chunk, stop_outside_ascii);
        if special != 0 {
            return at + special.trailing_zeros() as usize;
        }
        at += LANES;
        rest = after;
    }
    // The last few bytes, padded with NULs: those count as control characters, so the scan
    // stops at the end of the body at the latest.
    let mut padded = [0u8; LANES];
    padded[..rest.len()].copy_from_slice(rest);
    at + special_bytes(&padded, stop_outside_ascii).trailing_zeros() as usize
}

/// In JSON this module validated: where the string whose opening quote is at `at` ends (the
/// byte after its closing quote), and whether it has escapes.
pub(crate) fn string_end(bytes: &[u8], at: usize) -> (usize, bool) {
    let mut at = at + 1;
    let mut escaped = false;
    loop {
        // A validated string holds no control character: only its end stops the scan.
        let stop = skip_plain_bytes(bytes, at, false);
        match bytes.get(stop) {
            Some(b'\\') => {
                escaped = true;
                at = stop + 2;
            }
            Some(_) => return (stop + 1, escaped),
            None => return (bytes.len(), escaped),
        }
    }
}

/// In JSON this module validated: where the value that starts at `at` ends. An array or
/// object is looked through 64 bytes at a time: where its strings are and how its brackets
/// nest, from bit masks, one byte at a time only in a block with a backslash.
pub(crate) fn value_end(bytes: &[u8], mut at: usize) -> usize {
    match bytes.get(at) {
        Some(b'"') => string_end(bytes, at).0,
        Some(b'{' | b'[') => {
            let mut brackets = Brackets::default();
            while let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<64>()) {
                if let Some(end) = brackets.block(block) {
                    return at + end;
                }
                at += 64;
            }
            let rest = bytes.get(at..).unwrap_or_default();
            brackets.bytewise(rest).map_or(bytes.len(), |end| at + end)
        }
        // A number or a literal: up to the next delimiter.
        _ => {
            while let Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'a'..=b'z' | b'E') = bytes.get(at) {
                at += 1;
            }
            at
        }
    }
}

/// Where a look through a container is: how deep in brackets, and inside a string or an
/// escape.
#[derive(Default)]
struct Brackets {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Brackets {
    /// Goes through a block of 64 bytes; the offset after the bracket that closes the
    /// container, if it is in the block.
    fn block(&mut self, block: &[u8; 64]) -> Option<usize> {
        let [mut quotes, mut backslashes, mut opens, mut closes] = [0u64; 4];
        for (index, chunk) in block.chunks_exact(LANES).enumerate() {
            let mut lanes = [0u8; LANES];
            lanes.copy_from_slice(chunk);
            let lanes = u8x16::new(lanes);
            // `[` and `]` are `{` and `}` less 0x20; no other byte folds onto those two.
            let folded = lanes | u8x16::splat(0x20);
            let mask = |found: u8x16| u64::from(found.to_bitmask()) << (index * LANES);
            quotes |= mask(lanes.simd_eq(u8x16::splat(b'"')));
            backslashes |= mask(lanes.simd_eq(u8x16::splat(b'\\')));
            opens |= mask(folded.simd_eq(u8x16::splat(b'{')));
            closes |= mask(folded.simd_eq(u8x16::splat(b'}')));
        }
        if backslashes != 0 || self.escaped {
            return self.bytewise(block);
        }
        // A bit for each byte inside a string: each quote flips it.
        let mut inside = quotes;
        for shift in [1, 2, 4, 8, 16, 32] {
            inside ^= inside << shift;
        }
        if self.in_string {
            inside = !inside;
        }
        self.in_string = inside >> 63 == 1;
        let (opens, closes) = (opens & !inside, closes & !inside);
        if (closes.count_ones() as usize) < self.depth {
            // The container cannot close in this block.
            self.depth += opens.count_ones() as usize;
            self.depth -= closes.count_ones() as usize;
            return None;
        }
        let mut brackets = opens | closes;
        while brackets != 0 {
            let at = brackets.trailing_zeros() as usize;
            if opens >> at & 1 == 1 {
                self.depth += 1;
            } else {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    return Some(at + 1);
                }
            }
            brackets &= brackets - 1;
        }
        None
    }

    /// Goes through `bytes` one at a time; the offset after the bracket that closes the
    /// container, if it is there.
    fn bytewise(&mut self, bytes: &[u8]) -> Option<usize> {
        for (at, &byte) in bytes.iter().enumerate() {
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(at + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }
}

struct Scanner<'b, const UNIQUE: bool> {
    bytes: &'b [u8],
    at: usize,
    paths: &'b [FieldPath<'b>],
    values: [Option<Scalar<'b>>; MAX_FIELDS],
    /// For each level of the objects on the way to picked fields, the fields whose key at that
    /// level the innermost such object has already had: a second one is a duplicate.
    seen: [u16; MAX_PATH_DEPTH + 1],
    /// With `UNIQUE`: the keys of the objects open around the cursor.
    open_keys: OpenKeys<'b>,
}

/// The keys of the objects open around the scanner's cursor, to find one that an object
/// already has.
#[derive(Default)]
struct OpenKeys<'b> {
    /// The keys of every open object, innermost object's last.
    keys: Vec<Key>,
    /// Keys that had escapes, unescaped, one after another.
    unescaped: Vec<u8>,
    /// For each open object: where its keys start in `keys`, a bit for each of their
    /// fingerprints' [`bit`]s (a key whose bit is clear is new, without a comparison), and
    /// once it has more than [`KEYS_COMPARED`] keys, a set of them.
    objects: Vec<(usize, u64, Option<KeySet<'b>>)>,
}

/// The bit of `fingerprint` in an object's 64 bits of seen fingerprints.
fn bit(fingerprint: u64) -> u64 {
    1 << (fingerprint.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// One key of an open object: where its bytes are (in the body, or in
/// [`OpenKeys::unescaped`]), and a fingerprint that two equal keys share.
#[derive(Clone, Copy)]
struct Key {
    fingerprint: u64,
    start: usize,
    end: usize,
    unescaped: bool,
}

/// The keys of one object with many.
type KeySet<'b> = HashSet<Cow<'b, [u8]>>;

/// An object with more keys than this looks for a repeated one in a set; one with fewer
/// compares the fingerprints of its keys.
const KEYS_COMPARED: usize = 32;

/// What most pairs of different keys differ in: the length and the first and last eight
/// bytes. Comparing these first spares a byte-by-byte comparison of most pairs.
fn fingerprint(key: &[u8]) -> u64 {
    let len = key.len();
    // Two overlapping loads cover a key of 8 to 16 bytes whole; a shorter one is read in
    // smaller pieces the same way.
    let (head, tail) = match (key.first_chunk::<8>(), key.last_chunk::<8>()) {
        (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
        _ => match (key.first_chunk::<4>(), key.last_chunk::<4>()) {
            (Some(head), Some(tail)) => (
                u64::from(u32::from_le_bytes(*head)),
                u64::from(u32::from_le_bytes(*tail)),
            ),
            _ => key.iter().fold((0, 0), |(word, _), &byte| {
                ((word << 8) | u64::from(byte), 0)
            }),
        },
    };
    head ^ tail.rotate_left(29) ^ (len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl<'b> OpenKeys<'b> {
    fn bytes<'k>(&'k self, body: &'k [u8], key: Key) -> &'k [u8] {
        let from = if key.unescaped { &self.unescaped } else { body };
        &from[key.start..key.end]
    }

    /// Records `key` (`unescaped` when it is a copy, else the body's bytes `start..end`) in
    /// the innermost open object; `false` when that object has it already.
    fn insert(
        &mut self,
        body: &'b [u8],
        start: usize,
        end: usize,
        unescaped: Option<String>,
    ) -> bool {
        let key = match unescaped {
            Some(text) => {
                let start = self.unescaped.len();
                self.unescaped.extend_from_slice(text.as_bytes());
                let end = self.unescaped.len();
                Key {
                    fingerprint: fingerprint(&self.unescaped[start..end]),
                    start,
                    end,
                    unescaped: true,
                }
            }
            None => Key {
                fingerprint: fingerprint(&body[start..end]),
                start,
                end,
                unescaped: false,
            },
        };
        let Some((first, seen, set)) = self.objects.last_mut() else {
            return true;
        };
        let first = *first;
        if let Some(set) = set {
            let bytes = if key.unescaped {
                Cow::Owned(self.unescaped[key.start..key.end].to_vec())
            } else {
                Cow::Borrowed(&body[key.start..key.end])
            };
            return set.insert(bytes);
        }
        let bit = bit(key.fingerprint);
        let compare = *seen & bit != 0;
        *seen |= bit;
        let own = &self.keys[first..];
        if compare {
            let bytes = self.bytes(body, key);
            let repeated = own.iter().any(|other| {
                other.fingerprint == key.fingerprint && self.bytes(body, *other) == bytes
            });
            if repeated {
                return false;
            }
        }
        if own.len() >= KEYS_COMPARED {
            let set = own
                .iter()
                .chain([&key])
                .map(|key| {
                    if key.unescaped {
                        Cow::Owned(self.unescaped[key.start..key.end].to_vec())
                    } else {
                        Cow::Borrowed(&body[key.start..key.end])
                    }
                })
                .collect();
            self.keys.truncate(first);
            if let Some((_, _, slot)) = self.objects.last_mut() {
                *slot = Some(set);
            }
            return true;
        }
        self.keys.push(key);
        true
    }

    fn object_opens(&mut self) {
        self.objects.push((self.keys.len(), 0, None));
    }

    fn object_closes(&mut self) {
        if let Some((first, _, _)) = self.objects.pop() {
            self.keys.truncate(first);
        }
        if self.objects.is_empty() {
            self.unescaped.clear();
        }
    }
}

impl<'b, const UNIQUE: bool> Scanner<'b, UNIQUE> {
    /// With `UNIQUE`, records the key `start..end` of the innermost open object; `Err` when it
    /// has it already.
    #[inline(never)]
    fn unique_key(
        &mut self,
        at: usize,
        start: usize,
        end: usize,
        escaped: bool,
    ) -> Result<(), Problem> {
        let unescaped = escaped.then(|| self.string_value(start, end, true).into_owned());
        if self.open_keys.insert(self.bytes, start, end, unescaped) {
            Ok(())
        } else {
            problem(at, DUPLICATE_KEY)
        }
    }

    /// With `UNIQUE`, an object opens or closes.
    #[inline(never)]
    fn object_opens(&mut self) {
        self.open_keys.object_opens();
    }

    #[inline(never)]
    fn object_closes(&mut self) {
        self.open_keys.object_closes();
    }

    /// A problem at the cursor.
    #[cold]
    fn problem<T>(&self, message: &'static str) -> Result<T, Problem> {
        problem(self.at, message)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// The whole document: one value, then only whitespace.
    ///
    /// The cursor is kept in a local, not in `self.at`, so that it stays in a register on the
    /// paths most bodies take (structure, plain strings, whitespace); `self.at` is set only for
    /// the byte-by-byte readers of numbers, literals and unusual strings. The innermost open
    /// container's closing byte is kept at hand; those of the containers around it wait on a
    /// stack, touched only when a container opens or closes, and so do the fields that may still
    /// be found in each open object.
    ///
    /// Both stacks have a slot for every `u8` and are indexed by the depth's low byte: the depth
    /// never passes [`MAX_NESTING`], so this changes nothing, but the compiler can see that no
    /// index is out of bounds and drops the checks it would otherwise make on every value.
    fn document(&mut self) -> Result<(), Problem> {
        let mut candidates = if self.paths.is_empty() {
            0
        } else {
            (1u16 << self.paths.len()) - 1
        };
        let mut close = 0u8;
        let mut enclosing = [0u8; 1 << u8::BITS];
        let mut open_candidates = [0u16; 1 << u8::BITS];
        let mut depth = 0usize;
        let mut at = skip_whitespace(self.bytes, 0);
        'value: loop {
            // A value is expected at `at`: at the start, after `:`, after `[`, or after `,` in
            // an array.
            match self.bytes.get(at) {
                Some(b'"') => {
                    let (start, end, escaped) = self.string(at)?;
                    at = end + 1;
                    if candidates != 0 {
                        let value = self.string_value(start, end, escaped);
                        self.capture(candidates, depth, || Scalar::Str(value.clone()));
                    }
                }
                Some(&open @ (b'{' | b'[')) => {
                    if depth == MAX_NESTING {
                        return problem(at, "nesting deeper than 128");
                    }
                    self.capture(candidates, depth, || Scalar::Other);
                    at = skip_whitespace(self.bytes, at + 1);
                    // The ASCII code of each closing byte is its opening byte's plus two.
                    if self.bytes.get(at) == Some(&(open + 2)) {
                        at += 1;
                    } else {
                        let object = open == b'{';
                        if UNIQUE && object {
                            self.object_opens();
                        }
                        // Fields are paths of object keys: nothing under an array is picked out.
                        let inner = if object { candidates } else { 0 };
                        if inner != 0 {
                            // Candidates remain only on a path of keys, so `depth` is within
                            // the longest path here.
                            self.seen[depth] = 0;
                        }
                        open_candidates[depth & 0xFF] = inner;
                        enclosing[depth & 0xFF] = close;
                        close = open + 2;
                        depth += 1;
                        (at, candidates) = if object {
                            self.key(at, inner, depth)?
                        } else {
                            (at, 0)
                        };
                        continue 'value;
                    }
                }
                Some(_) => {
                    self.at = at;
                    self.scalar(candidates, depth)?;
                    at = self.at;
                }
                None => return problem(at, "EOF while parsing a value"),
            }
            // A value is complete: a `,` or the end of its container follows, or at the top,
            // the end of the document.
            loop {
                if depth == 0 {
                    at = skip_whitespace(self.bytes, at);
                    return match self.bytes.get(at) {
                        None => Ok(()),
                        Some(_) => problem(at, "trailing characters"),
                    };
                }
                let object = close == b'}';
                match self.bytes.get(at) {
                    Some(b',') => {
                        at = skip_whitespace(self.bytes, at + 1);
                        (at, candidates) = if object {
                            let open = open_candidates[(depth - 1) & 0xFF];
                            self.key(at, open, depth)?
                        } else if self.bytes.get(at) == Some(&close) {
                            return problem(at, "trailing comma");
                        } else {
                            (at, 0)
                        };
                        continue 'value;
                    }
                    Some(&byte) if byte == close => {
                        if UNIQUE && close == b'}' {
                            self.object_closes();
                        }
                        at += 1;
                        depth -= 1;
                        close = enclosing[depth & 0xFF];
                    }
                    // Whitespace is looked for only once the byte is neither of the above:
                    // compact JSON has none.
                    Some(b' ' | b'\n' | b'\r' | b'\t') => at = whitespace_end(self.bytes, at),
                    Some(_) if object => return problem(at, "expected `,` or `}`"),
                    Some(_) => return problem(at, "expected `,` or `]`"),
                    None if object => return problem(at, "EOF while parsing an object"),
                    None => return problem(at, "EOF while parsing a list"),
                }
            }
        }
    }

    /// An object key at `at`, its `:` and the whitespace after it; returns where the value
    /// starts and the candidates that continue with this key.
    #[inline(always)]
    fn key(&mut self, at: usize, open: u16, depth: usize) -> Result<(usize, u16), Problem> {
        match self.bytes.get(at) {
            Some(b'"') => {}
            // Keys are read after `{` only when the object is not empty: a `}` follows a comma.
            Some(b'}') => return problem(at, "trailing comma"),
            Some(_) => return problem(at, "key must be a string"),
            None => return problem(at, "EOF while parsing an object"),
        }
        let (start, end, escaped) = self.string(at)?;
        // In compact JSON the `:` follows at once; whitespace is looked for only otherwise.
        let mut colon = end + 1;
        if self.bytes.get(colon) != Some(&b':') {
            colon = skip_whitespace(self.bytes, colon);
            match self.bytes.get(colon) {
                Some(b':') => {}
                Some(_) => return problem(colon, "expected `:`"),
                None => return problem(colon, "EOF while parsing an object"),
            }
        }
        let value = skip_whitespace(self.bytes, colon + 1);
        if UNIQUE {
            self.unique_key(at, start, end, escaped)?;
        }
        if open == 0 {
            return Ok((value, 0));
        }
        let key: Cow<'_, [u8]> = if escaped {
            Cow::Owned(
                self.string_value(start, end, true)
                    .into_owned()
                    .into_bytes(),
            )
        } else {
            Cow::Borrowed(&self.bytes[start..end])
        };
        let level = depth - 1;
        let mut narrowed = 0;
        for (index, path) in self.paths.iter().enumerate() {
            if open & (1 << index) != 0
                && path.get(level).is_some_and(|want| want.as_bytes() == &*key)
            {
                narrowed |= 1 << index;
            }
        }
        if self.seen[level] & narrowed != 0 {
            return problem(
                at,
                "duplicate key: this object already has a field the pipeline reads",
            );
        }
        self.seen[level] |= narrowed;
        Ok((value, narrowed))
    }

    /// Records `scalar` for every candidate whose path ends at `depth` keys; first one wins.
    #[inline(always)]
    fn capture(&mut self, candidates: u16, depth: usize, scalar: impl Fn() -> Scalar<'b>) {
        if candidates != 0 {
            self.capture_some(candidates, depth, scalar);
        }
    }

    /// [`Scanner::capture`]'s work, out of line: in line, the registers it needs would be taken
    /// from the grammar's loop on every value, though most values have no candidates.
    #[inline(never)]
    fn capture_some(&mut self, candidates: u16, depth: usize, scalar: impl Fn() -> Scalar<'b>) {
        for (index, path) in self.paths.iter().enumerate() {
            if candidates & (1 << index) != 0 && path.len() == depth && self.values[index].is_none()
            {
                self.values[index] = Some(scalar());
            }
        }
    }

    /// A number or literal at the cursor, or whatever else is not a value.
    #[inline(always)]
    fn scalar(&mut self, candidates: u16, depth: usize) -> Result<(), Problem> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                self.number()?;
                if candidates != 0 {
                    let number = parse_f64(&self.bytes[start..self.at]);
                    self.capture(candidates, depth, || Scalar::Number(number));
                }
            }
            Some(b't') => self.literal(b"true", candidates, depth)?,
            Some(b'f') => self.literal(b"false", candidates, depth)?,
            Some(b'n') => self.literal(b"null", candidates, depth)?,
            Some(_) => return self.problem("expected value"),
            None => return self.problem("EOF while parsing a value"),
        }
        Ok(())
    }

    /// `true`, `false` or `null`. The word's length is a constant, so the comparison is a load
    /// or two, not a call.
    #[inline(always)]
    fn literal<const N: usize>(
        &mut self,
        word: &'static [u8; N],
        candidates: u16,
        depth: usize,
    ) -> Result<(), Problem> {
        if self.bytes.get(self.at..self.at + N) == Some(word.as_slice()) {
            self.at += N;
            self.capture(candidates, depth, || Scalar::Other);
            Ok(())
        } else {
            self.misspelt(word)
        }
    }

    /// Points at the first byte that differs from `word`, as a parser reading letter by letter
    /// would.
    #[cold]
    #[inline(never)]
    fn misspelt(&mut self, word: &[u8]) -> Result<(), Problem> {
        let matching = self.bytes[self.at..]
            .iter()
            .zip(word)
            .take_while(|(got, want)| got == want)
            .count();
        self.at += matching;
        if self.at == self.bytes.len() {
            self.problem("EOF while parsing a value")
        } else {
            self.problem("expected ident")
        }
    }

    /// A number by RFC 8259's grammar, of any magnitude.
    fn number(&mut self) -> Result<(), Problem> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return self.problem("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.problem("invalid number");
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return self.problem("invalid number");
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        let mut at = self.at;
        while let Some(b'0'..=b'9') = self.bytes.get(at) {
            at += 1;
        }
        self.at = at;
    }

    /// The string whose opening quote is at `at`: the span of its contents (the closing quote
    /// is at the span's end) and whether it has escapes. Only strings can hold bytes outside
    /// ASCII, so this is also where the body's UTF-8 is checked.
    #[inline(always)]
    fn string(&mut self, at: usize) -> Result<(usize, usize, bool), Problem> {
        let start = at + 1;
        match plain_string_end(self.bytes, start) {
            // Most strings are ASCII without escapes: done in line.
            Ok(end) => Ok((start, end, false)),
            Err(stop) => {
                self.at = stop;
                self.string_rest(start)
            }
        }
    }

    /// The rest of a string that has an escape, a byte outside ASCII, a control character, or
    /// no end, from `self.at` on its first such byte. One-character escapes are taken in line;
    /// `\\u` escapes, bytes outside ASCII and problems go to the readers that report them.
    #[cold]
    #[inline(never)]
    fn string_rest(&mut self, start: usize) -> Result<(usize, usize, bool), Problem> {
        let bytes = self.bytes;
        let mut at = self.at;
        let mut escaped = false;
        loop {
            match bytes.get(at) {
                Some(b'"') => return Ok((start, at, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    if let Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') =
                        bytes.get(at + 1)
                    {
                        at += 2;
                    } else {
                        self.at = at;
                        self.escape()?;
                        at = self.at;
                    }
                }
                Some(0x80..) => {
                    self.at = at;
                    self.non_ascii()?;
                    at = self.at;
                }
                Some(_) => {
                    return problem(
                        at,
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    );
                }
                None => return problem(at, "EOF while parsing a string"),
            }
            at = skip_plain_bytes(bytes, at, true);
        }
    }

    /// A run of string bytes that starts outside ASCII, up to the next `"`, `\` or control
    /// character, checked as UTF-8 in one go. (No UTF-8 sequence holds any of those bytes, so
    /// the run never ends inside a character.)
    fn non_ascii(&mut self) -> Result<(), Problem> {
        let from = self.at;
        self.at = skip_plain_bytes(self.bytes, from, false);
        match std::str::from_utf8(&self.bytes[from..self.at]) {
            Ok(_) => Ok(()),
            Err(error) => {
                self.at = from + error.valid_up_to();
                self.problem("invalid UTF-8")
            }
        }
    }

    /// An escape sequence other than the one-character ones, which [`Scanner::string_rest`]
    /// takes in line, starting at its `\`: a `\u` escape, or what is wrong with it.
    fn escape(&mut self) -> Result<(), Problem> {
        self.at += 1;
        match self.peek() {
            Some(b'u') => {
                self.at += 1;
                let unit = self.hex_unit()?;
                match unit {
                    0xD800..=0xDBFF => {
                        // A high surrogate must be followed by a low one.
                        if self.bytes[self.at..].starts_with(b"\\u") {
                            self.at += 2;
                            match self.hex_unit()? {
                                0xDC00..=0xDFFF => Ok(()),
                                _ => self.problem("lone leading surrogate in hex escape"),
                            }
                        } else {
                            self.problem("lone leading surrogate in hex escape")
                        }
                    }
                    0xDC00..=0xDFFF => self.problem("lone trailing surrogate in hex escape"),
                    _ => Ok(()),
                }
            }
            Some(_) => self.problem("invalid escape"),
            None => self.problem("EOF while parsing a string"),
        }
    }

    fn hex_unit(&mut self) -> Result<u16, Problem> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(byte @ b'0'..=b'9') => byte - b'0',
                Some(byte @ b'a'..=b'f') => byte - b'a' + 10,
                Some(byte @ b'A'..=b'F') => byte - b'A' + 10,
                Some(_) => return self.problem("invalid escape"),
                None => return self.problem("EOF while parsing a string"),
            };
            unit = unit << 4 | u16::from(digit);
            self.at += 1;
        }
        Ok(unit)
    }

    /// The text of a validated string: borrowed when it has no escapes.
    fn string_value(&self, start: usize, end: usize, escaped: bool) -> Cow<'b, str> {
        if escaped {
            // The quoted token was validated above; serde_json does the unescaping.
            let token = &self.bytes[start - 1..=end];
            Cow::Owned(serde_json::from_slice(token).expect("a validated JSON string unescapes"))
        } else {
            // Validated as UTF-8 while scanning: always borrowed, never replaced.
            let contents = &self.bytes[start..end];
            std::str::from_utf8(contents)
                .map_or_else(|_| String::from_utf8_lossy(contents), Cow::Borrowed)
        }
    }
}

#[cfg(test)]
mod tests {
    // The reference the scan is held to, here and in the `json_body` fuzz target.
    use agent_trigger_testkit::json_reference as reference;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    const PATHS: &[FieldPath<'_>] = &[&["type"], &["event", "type"], &["event", "bot_id"], &["ts"]];

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn picks_out_fields() {
        let body = br#"{"type":"event_callback","event":{"type":"app_mention","bot_id":null,"x":1},"ts":17.5}"#;
        let fields = scan(body, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), Some("event_callback"));
        assert_eq!(fields.str(&["event", "type"]), Some("app_mention"));
        assert!(fields.is_present(&["event", "bot_id"]));
        assert_eq!(fields.str(&["event", "bot_id"]), None);
        assert_eq!(fields.number(&["ts"]), Some(17.5));
    }

    #[test]
    fn a_picked_field_twice_in_one_object_is_refused_where_the_second_starts() {
        for (body, column) in [
            (r#"{"type":"a","x":1,"type":"b"}"#, 19),
            (r#"{"event":{"type":"a","t\u0079pe":"b"}}"#, 22),
            // The object on the way to a picked field counts too.
            (r#"{"event":{"type":"a"},"event":{}}"#, 23),
        ] {
            let error = scan(body.as_bytes(), PATHS).unwrap_err();
            assert_eq!(
                (error.message.as_str(), error.line, error.column),
                (
                    "duplicate key: this object already has a field the pipeline reads",
                    1,
                    column
                ),
                "{body}"
            );
        }
        // Keys the pipeline does not read may repeat, and so may picked keys in other objects.
        for body in [
            r#"{"x":1,"x":2}"#,
            r#"{"inner":{"type":1},"other":{"type":2},"type":3}"#,
            r#"[{"type":1},{"type":2}]"#,
            r#"{"event":{"type":"a","x":{"type":1,"type":2}}}"#,
        ] {
            assert!(scan(body.as_bytes(), PATHS).is_ok(), "{body}");
        }
    }

    #[test]
    fn with_unique_keys_no_object_may_hold_any_key_twice() {
        for (body, column) in [
            (r#"{"x":1,"y":2,"x":3}"#, 14),
            (r#"[{"a":{"k":1,"\u006b":2}}]"#, 14),
            (r#"{"a":{"b":1},"c":{"b":1,"d":{"e":1,"e":2}}}"#, 36),
        ] {
            let error = scan_unique_keys(body.as_bytes(), PATHS).unwrap_err();
            assert_eq!(
                (error.message.as_str(), error.column),
                (DUPLICATE_KEY, column),
                "{body}"
            );
            assert!(scan(body.as_bytes(), PATHS).is_ok(), "{body}");
        }
        for body in [
            r#"{"a":{"k":1},"b":{"k":1},"k":[{"k":1},{"k":2}]}"#,
            "{}",
            r#"{"a":{},"b":{}}"#,
        ] {
            assert!(scan_unique_keys(body.as_bytes(), PATHS).is_ok(), "{body}");
        }
        // Many keys: through a set.
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(scan_unique_keys(format!("{{{many}\"k3\":0}}").as_bytes(), &[]).is_err());
        assert!(
            scan_unique_keys(format!("{{{many}\"z\":{{{many}\"y\":1}}}}").as_bytes(), &[]).is_ok()
        );
        // Keys alike in length and in their first and last eight bytes differ in between.
        let alike = r#"{"customfield_10020":1,"customfiXld_10020":2,"customfield_10021":3}"#;
        assert!(scan_unique_keys(alike.as_bytes(), &[]).is_ok());
        let alike = r#"{"customfield_10020":1,"customfiXld_10020":2,"customfield_10020":3}"#;
        assert!(scan_unique_keys(alike.as_bytes(), &[]).is_err());
        // An escaped key repeats an unescaped one, in an object of few keys and of many.
        assert!(scan_unique_keys(br#"{"ab":1,"\u0061b":2}"#, &[]).is_err());
        assert!(scan_unique_keys(format!(r#"{{{many}"\u006b7":0}}"#).as_bytes(), &[]).is_err());
        assert!(
            scan_unique_keys(format!(r#"{{"\u006b7":0,{many}"z":0}}"#).as_bytes(), &[]).is_err()
        );
        // An object closed inside another leaves the outer one's keys as they were.
        assert!(
            scan_unique_keys(
                format!(r#"{{"a":1,"b":{{{many}"a":1}},"a":2}}"#).as_bytes(),
                &[]
            )
            .is_err()
        );
        // A picked field's value is still picked.
        let fields = scan_unique_keys(br#"{"type":"t","event":{"type":"e"}}"#, PATHS).unwrap();
        assert_eq!(fields.str(&["event", "type"]), Some("e"));
    }

    #[test]
    fn fields_are_not_found_in_the_wrong_place() {
        let body = br#"{"event":[{"type":"in array"}],"inner":{"type":"nested"},"type":5}"#;
        let fields = scan(body, PATHS).unwrap();
        assert_eq!(fields.str(&["event", "type"]), None);
        assert_eq!(fields.str(&["type"]), None);
        assert_eq!(fields.number(&["type"]), Some(5.0));
        // A key that only starts like a wanted one is another key.
        let fields = scan(br#"{"types":"x","event":{"typed":"y"}}"#, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), None);
        assert_eq!(fields.str(&["event", "type"]), None);
    }

    #[test]
    fn escaped_strings_and_keys_are_unescaped() {
        let fields = scan(br#"{"type":"a\"b\u00e9\ud83d\ude00"}"#, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), Some("a\"bé😀"));
        let fields = scan(br#"{"\u0074ype":"escaped key"}"#, PATHS).unwrap();
        assert_eq!(fields.str(&["type"]), Some("escaped key"));
    }

    #[test]
    fn any_json_text_is_accepted() {
        for body in [
            "null",
            "0",
            "-0",
            "-1.5e3",
            "1E+2",
            "2.5e-7",
            "\"s\"",
            "\"\"",
            "[]",
            "{}",
            " [1, {\"a\": [true, false, null]}] \n",
            "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\"",
            "\"日本語 ✓\"",
            "{\"a\":{\"b\":{\"c\":[[],[{}]]}}}",
            // Numbers of any magnitude and precision: the input is passed on as bytes.
            "1e400",
            "-1e400",
            "[1e999999999, 0.0000000000000000000000000000000001]",
        ] {
            assert!(scan(body.as_bytes(), PATHS).is_ok(), "{body}");
        }
    }

    #[test]
    fn malformed_bodies_report_what_and_where() {
        let error = scan(b"{\n  \"a\": trux\n}", PATHS).unwrap_err();
        assert_eq!(
            (error.line, error.column, error.message.as_str()),
            (2, 11, "expected ident")
        );
        let error = scan(b"{\n  \"a\": tru\n}", PATHS).unwrap_err();
        assert_eq!(error.line, 2);
        let error = scan(b"{} {}", PATHS).unwrap_err();
        assert_eq!(
            (error.message.as_str(), error.column),
            ("trailing characters", 4)
        );
        let cases: [(&[u8], &str); 22] = [
            (b"", "EOF while parsing a value"),
            (b"   ", "EOF while parsing a value"),
            (b"{\"a\":1,}", "trailing comma"),
            (b"[1,]", "trailing comma"),
            (b"[1 2]", "expected `,` or `]`"),
            (b"{\"a\":1 \"b\":2}", "expected `,` or `}`"),
            (b"{\"a\" 1}", "expected `:`"),
            (b"{a:1}", "key must be a string"),
            (b"{\"a\":", "EOF while parsing a value"),
            (b"{\"a\":1", "EOF while parsing an object"),
            (b"[1", "EOF while parsing a list"),
            (b"\"abc", "EOF while parsing a string"),
            (
                b"\"a\tb\"",
                "control character (\\u0000-\\u001F) found while parsing a string",
            ),
            (b"\"\\x\"", "invalid escape"),
            (b"\"\\u12g4\"", "invalid escape"),
            (b"\"\\ud800\"", "lone leading surrogate in hex escape"),
            (b"\"\\udc00\"", "lone trailing surrogate in hex escape"),
            (b"01", "trailing characters"),
            (b"1.", "invalid number"),
            (b"-", "invalid number"),
            (
                b"{\"ts\":1,\"ts\":2}",
                "duplicate key: this object already has a field the pipeline reads",
            ),
            (b"'a'", "expected value"),
        ];
        for (body, message) in cases {
            let error = scan(body, PATHS).unwrap_err();
            assert_eq!(
                error.message,
                message,
                "{:?}",
                String::from_utf8_lossy(body)
            );
            assert!(error.line >= 1 && error.column >= 1);
        }
    }

    #[test]
    fn agrees_with_the_reference() {
        let bodies: &[&[u8]] = &[
            b"[1e309, -1e400, 1e99999999999]",
            b"{\"type\":1,\"event\":{\"type\":2},\"type\":3}",
            b"{\"event\":{\"bot_id\":1,\"bot_id\":1}}",
            b"{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}",
            b"[1e308, -1e-400, 123456789012345678901234567890]",
            b"[1e309]",
            b"\"\\ud83d\\ude00\"",
            b"\"\\ud83d\\u0041\"",
            b"{\"a\":1}x",
            b"[\"a\\u0000b\"]",
            b"[-01]",
            b"[.5]",
            b"[+1]",
            b"[0e]",
            b"[tru]",
            b"[nulls]",
            b"\xef\xbb\xbf{}",
            b"{\"\":\"\"}",
            // UTF-8 is checked inside strings, where it may appear, at any offset.
            "[\"\u{e9}t\u{e9}\", \"\u{65e5}\u{672c}\u{8a9e}\", \"\u{1f600}\"]".as_bytes(),
            b"[\"abcdefgh\xc3\xa9ijklmnop\"]",
            b"[\"abcdefgh\xc3\"]",
            b"[\"abcdefg\xff\"]",
            b"[\"\xc0\xaf\"]",
            b"[\"\xed\xa0\x80\"]",
            b"[\"\xf4\x90\x80\x80\"]",
            b"[\"\xe6\x97\xa5\xe6\x97\"]",
            b"[\"\xe6\x97\xa5\\n\xe6\x97\xa5\"]",
            b"[1,\xc3\xa9]",
            b"{\"\xc3\xa9\":1}",
        ];
        for body in bodies {
            let ours = scan(body, PATHS).is_ok();
            let theirs = reference::accepts(body, PATHS);
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn invalid_utf8_is_located() {
        let error = scan(b"{\"a\":\n \"\xff\"}", PATHS).unwrap_err();
        assert_eq!(error.message, "invalid UTF-8");
        assert_eq!((error.line, error.column), (2, 3));
    }

    #[test]
    fn nesting_is_limited_to_128() {
        assert!(scan(nested(MAX_NESTING).as_bytes(), PATHS).is_ok());
        let error = scan(nested(MAX_NESTING + 1).as_bytes(), PATHS).unwrap_err();
        assert_eq!(error.message, "nesting deeper than 128");
        let objects = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert!(scan(objects(MAX_NESTING).as_bytes(), PATHS).is_ok());
        assert!(scan(objects(MAX_NESTING + 1).as_bytes(), PATHS).is_err());
        assert!(scan(nested(100_000).as_bytes(), PATHS).is_err());
    }

    #[test]
    fn strings_are_scanned_in_chunks_whatever_the_offset() {
        // Each special byte at every offset of the first chunks and of the padded tail.
        for length in 0..40 {
            let (before, after) = ("x".repeat(length), "y".repeat(length % 7));
            for (special, text) in [("\\\"", "\""), ("\\\\", "\\"), ("é", "é"), ("\\u00e9", "é")]
            {
                let body = format!(r#"{{"type":"{before}{special}{after}"}}"#);
                let fields = scan(body.as_bytes(), PATHS).unwrap();
                let expected = format!("{before}{text}{after}");
                assert_eq!(fields.str(&["type"]), Some(expected.as_str()), "{body}");
            }
            let control = format!("\"{before}\u{1}{after}\"");
            let error = scan(control.as_bytes(), PATHS).unwrap_err();
            assert_eq!(error.column, length + 2, "{control:?}");
            let unterminated = format!("\"{before}");
            let error = scan(unterminated.as_bytes(), PATHS).unwrap_err();
            assert_eq!(error.message, "EOF while parsing a string");
            assert_eq!(error.column, length + 2, "{unterminated}");
        }
    }

    /// Any JSON value: strings with escapes and text outside ASCII, integers and floats, and
    /// containers a few levels deep whose keys include the ones `PATHS` picks out.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z\\\\\"\u{0}-\u{1f}\u{e9}\u{1f600} ]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec!["type", "event", "bot_id", "ts", "x", "é"]),
                        inner
                    ),
                    0..6
                )
                .prop_map(|members| Value::Object(
                    members
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn accepts_what_serde_json_writes_and_picks_what_it_reads(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let fields = scan(&text, PATHS).unwrap();
            for path in PATHS {
                let pointer = path.iter().map(|key| format!("/{key}")).collect::<String>();
                // serde_json keeps an object's last duplicate key, and writes no duplicates.
                match value.pointer(&pointer) {
                    Some(Value::String(text)) => prop_assert_eq!(fields.str(path), Some(text.as_str())),
                    Some(Value::Number(number)) => prop_assert_eq!(fields.number(path), number.as_f64()),
                    Some(_) => prop_assert!(fields.is_present(path)),
                    None => prop_assert!(!fields.is_present(path)),
                }
            }
        }

        #[test]
        fn a_repeated_key_is_refused_in_objects_of_any_size(
            objects in prop::collection::vec(
                (0usize..70, prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>()))),
                1..4,
            ),
            escape in any::<prop::sample::Index>(),
        ) {
            // Objects nested one in the next, each with keys `k0`, `k1` … and maybe one of them
            // again further on; one key written with an escape.
            let objects: Vec<Vec<usize>> = objects
                .into_iter()
                .map(|(count, repeat)| {
                    let mut keys: Vec<usize> = (0..count).collect();
                    if let Some((key, at)) = repeat.filter(|_| count > 0) {
                        let key = key.index(count);
                        keys.insert(key + 1 + at.index(count - key), key);
                    }
                    keys
                })
                .collect();
            let escaped = escape.index(objects.iter().map(Vec::len).sum::<usize>().max(1));
            let mut text = String::new();
            let mut written = 0;
            for keys in &objects {
                text.push('{');
                for key in keys {
                    if written == escaped {
                        text.push_str(&format!("\"\\u006b{key}\":0,"));
                    } else {
                        text.push_str(&format!("\"k{key}\":0,"));
                    }
                    written += 1;
                }
                text.push_str("\"inner\":");
            }
            text.push_str("null");
            text.push_str(&"}".repeat(objects.len()));
            let repeated = objects.iter().any(|keys| {
                let mut seen = HashSet::new();
                !keys.iter().all(|key| seen.insert(key))
            });
            prop_assert_eq!(scan_unique_keys(text.as_bytes(), &[]).is_err(), repeated, "{}", text);
        }

        #[test]
        fn value_end_finds_where_each_value_ends(values in prop::collection::vec(json_value(), 1..8), pretty in any::<bool>()) {
            // Values one after another in an array: each ends where the next one's comma is.
            let write = |value: &Value| if pretty {
                serde_json::to_vec_pretty(value).unwrap()
            } else {
                serde_json::to_vec(value).unwrap()
            };
            let mut text = b"[".to_vec();
            let mut ends = Vec::new();
            for value in &values {
                let start = text.len();
                text.extend_from_slice(&write(value));
                ends.push((start, text.len()));
                text.push(b',');
            }
            text.pop();
            text.push(b']');
            prop_assert_eq!(value_end(&text, 0), text.len());
            for (start, end) in ends {
                prop_assert_eq!(value_end(&text, start), end, "{}", String::from_utf8_lossy(&text[start..end]));
            }
        }

        #[test]
        fn a_changed_byte_is_refused_exactly_when_the_reference_refuses_it(
            value in json_value(),
            at in any::<prop::sample::Index>(),
            byte in prop::sample::select(b"{}[]:,\"\\ \n0-.eEtfnu\x01\x7f\xc3\xa9\xff".to_vec()),
            insert in any::<bool>(),
        ) {
            let mut text = serde_json::to_vec(&value).unwrap();
            let at = at.index(text.len() + 1);
            if insert || at == text.len() {
                text.insert(at, byte);
            } else {
                text[at] = byte;
            }
            let ours = scan(&text, PATHS).is_ok();
            let theirs = reference::accepts(&text, PATHS);
            prop_assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
        }
    }
}
