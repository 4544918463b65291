//! The 6-digit code: generated from the OS CSPRNG, stored only as an HMAC,
//! checked in constant time by [`verify`].

use std::fmt;

use hmac::digest::CtOutput;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::error::DependencyError;
use super::time::{EpochSeconds, Timestamp};

type HmacSha256 = Hmac<Sha256>;

/// Number of distinct codes (000000 to 999999).
const CODE_SPACE: u32 = 1_000_000;
/// Largest multiple of `CODE_SPACE` that fits in a u32: draws at or above it
/// are thrown away so every code is equally likely (no modulo bias).
const ACCEPT_BELOW: u32 = u32::MAX - (u32::MAX % CODE_SPACE);

/// A fresh code. Its `Debug` is redacted so it cannot slip into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Code(u32);

/// The OS random source failed; no code can be made safely.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct RandomSourceError(getrandom::Error);

impl From<RandomSourceError> for DependencyError {
    fn from(err: RandomSourceError) -> Self {
        DependencyError::internal("OS", "getrandom", err.to_string())
    }
}

impl Code {
    /// Draws a uniformly distributed code from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, RandomSourceError> {
        Self::generate_with(|| getrandom::u32().map_err(RandomSourceError))
    }

    /// Rejection sampling over any source of u32 draws.
    fn generate_with<E>(mut draw: impl FnMut() -> Result<u32, E>) -> Result<Self, E> {
        loop {
            let value = draw()?;
            if value < ACCEPT_BELOW {
                return Ok(Self(value % CODE_SPACE));
            }
        }
    }

    /// The six digits, no separator (`012345`): what the HMAC covers.
    pub fn digits(&self) -> String {
        format!("{:06}", self.0)
    }

    /// The code as shown to people: `012-345`.
    pub fn display(&self) -> String {
        format!("{:03}-{:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

/// `codeHash` as stored: lowercase hex of HMAC-SHA256(secret, `challengeId:code`).
#[derive(Clone, PartialEq, Eq)]
pub struct CodeHash(String);

impl CodeHash {
    /// Computes the stored hash of `code` for `challenge_id`.
    pub fn new(secret: &[u8], challenge_id: &str, code: &Code) -> Self {
        Self(hex::encode(
            mac(secret, challenge_id, &code.digits())
                .finalize()
                .into_bytes(),
        ))
    }

    /// The lowercase hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(<redacted>)")
    }
}

// HMAC accepts keys of any length, so the key can never be refused.
#[allow(clippy::unreachable)]
fn mac(secret: &[u8], challenge_id: &str, digits: &str) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(challenge_id.as_bytes());
    mac.update(b":");
    mac.update(digits.as_bytes());
    mac
}

/// One entry of a challenge's `codes` map, as a login flow reads it. Its
/// `Debug` hides the hash.
#[derive(Clone, Copy)]
pub struct CodeEntry<'a> {
    /// The entry's `codeHash`: 64 hex digits (anything else never matches).
    pub code_hash: &'a str,
    /// The entry's `expireAt`: the code is valid while `now < expire_at`.
    pub expire_at: EpochSeconds,
}

impl fmt::Debug for CodeEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeEntry")
            .field("code_hash", &"<redacted>")
            .field("expire_at", &self.expire_at)
            .finish()
    }
}

/// Checks a code typed by a user against the entries of a challenge's `codes`
/// map, for the login flow: true when some unexpired entry holds its hash.
///
/// `code` may be written `123456` or `123-456`; surrounding whitespace is
/// ignored. An entry counts only while `now < expire_at`; a malformed code or
/// entry hash never matches. The MAC is computed once and compared with every
/// entry in constant time, and the loop never stops at a match, so the time
/// taken does not tell which entry matched.
pub fn verify<'a>(
    secret: &[u8],
    challenge_id: &str,
    code: &str,
    entries: impl IntoIterator<Item = CodeEntry<'a>>,
    now: Timestamp,
) -> bool {
    let Some(digits) = normalize_typed_code(code) else {
        return false;
    };
    let typed = mac(secret, challenge_id, &digits).finalize();
    let mut matched = false;
    for entry in entries {
        let fresh = !entry.expire_at.is_at_or_before(now);
        // Non-short-circuit `&` and `|`: every entry is compared.
        matched |= fresh & stored_tag(entry.code_hash).is_some_and(|stored| stored == typed);
    }
    matched
}

/// A stored `codeHash` as a MAC tag whose `==` is constant-time; `None`
/// unless it is exactly 64 hex digits.
fn stored_tag(code_hash: &str) -> Option<CtOutput<HmacSha256>> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(code_hash, &mut bytes).ok()?;
    Some(CtOutput::new(bytes.into()))
}

/// `123456`, `123-456` or either with whitespace around → `123456`.
fn normalize_typed_code(code: &str) -> Option<String> {
    let code = code.trim();
    let digits: String = match code.len() {
        6 => code.to_string(),
        7 if code.as_bytes()[3] == b'-' => format!("{}{}", &code[..3], &code[4..]),
        _ => return None,
    };
    digits.bytes().all(|b| b.is_ascii_digit()).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn digits_and_display_are_zero_padded() {
        let code = Code(7);
        assert_eq!(code.digits(), "000007");
        assert_eq!(code.display(), "000-007");
        assert_eq!(Code(123_456).display(), "123-456");
    }

    #[test]
    fn draws_at_or_above_the_acceptance_bound_are_rejected() {
        let mut draws = vec![u32::MAX, ACCEPT_BELOW, ACCEPT_BELOW - 1].into_iter();
        let code = Code::generate_with(|| Ok::<_, ()>(draws.next().unwrap())).unwrap();
        assert_eq!(code, Code((ACCEPT_BELOW - 1) % CODE_SPACE));
        assert_eq!(code.0, 999_999);
        assert_eq!(ACCEPT_BELOW % CODE_SPACE, 0);
    }

    #[test]
    fn random_source_failure_is_an_error_not_a_panic() {
        assert!(Code::generate_with(|| Err::<u32, _>("no entropy")).is_err());
    }

    #[test]
    fn generated_codes_are_six_digits_and_vary() {
        // 200 codes from the real CSPRNG. Fewer than 191 distinct ones needs at
        // least 10 colliding pairs; the expected number is C(200,2)/10^6 ≈ 0.02,
        // so by the Poisson tail a fair source fails less than once in 10^20.
        let codes: std::collections::HashSet<String> = (0..200)
            .map(|_| Code::generate().unwrap().digits())
            .collect();
        assert!(codes
            .iter()
            .all(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_digit())));
        assert!(
            codes.len() > 190,
            "200 draws from a million should rarely repeat"
        );
    }

    /// Per position, how often each digit appears among the codes.
    fn digit_counts(codes: impl IntoIterator<Item = Code>) -> [[u32; 10]; 6] {
        let mut counts = [[0u32; 10]; 6];
        for code in codes {
            for (pos, b) in code.digits().bytes().enumerate() {
                counts[pos][usize::from(b - b'0')] += 1;
            }
        }
        counts
    }

    /// The code made from one accepted draw (a rejected one would loop forever).
    fn code_from(draw: u32) -> Code {
        Code::generate_with(|| Ok::<_, ()>(draw)).unwrap()
    }

    #[test]
    fn one_block_of_accepted_draws_gives_every_code_exactly_once() {
        // Any CODE_SPACE consecutive accepted draws starting at a multiple of
        // CODE_SPACE: the first block and the last one below the bound.
        for first in [0, ACCEPT_BELOW - CODE_SPACE] {
            let mut seen = vec![false; CODE_SPACE as usize];
            for draw in first..first + CODE_SPACE {
                let code = code_from(draw);
                assert!(!seen[code.0 as usize], "code {} made twice", code.0);
                seen[code.0 as usize] = true;
            }
            assert!(seen.iter().all(|&s| s), "a code was never made");
        }
    }

    #[test]
    fn every_digit_position_is_exactly_uniform_over_a_block() {
        // 10^6 draws: each digit appears exactly 10^5 times at each position.
        let counts = digit_counts((0..CODE_SPACE).map(code_from));
        for (pos, row) in counts.iter().enumerate() {
            assert!(
                row.iter().all(|&c| c == CODE_SPACE / 10),
                "position {pos}: {row:?}"
            );
        }
    }

    #[test]
    fn accepted_draws_are_whole_blocks_so_every_code_has_equal_odds() {
        // Draws below ACCEPT_BELOW are whole blocks of CODE_SPACE (each block
        // gives every code once, see above), and the bound is the highest such:
        // so each code has exactly ACCEPT_BELOW / CODE_SPACE = 4294 draws.
        assert_eq!(ACCEPT_BELOW % CODE_SPACE, 0);
        assert_eq!(ACCEPT_BELOW / CODE_SPACE, 4294);
        assert!(
            ACCEPT_BELOW.checked_add(CODE_SPACE).is_none(),
            "one more whole block would not fit in a u32"
        );
        assert_eq!(ACCEPT_BELOW, 4_294_000_000);
    }

    #[test]
    fn every_draw_from_the_bound_up_is_rejected() {
        // All 967,296 draws in ACCEPT_BELOW..=u32::MAX, then one accepted draw:
        // the code comes from that last draw, after every other was refused.
        let mut draws = (ACCEPT_BELOW..=u32::MAX).chain([ACCEPT_BELOW - 1, 0]);
        let mut used = 0u32;
        let code = Code::generate_with(|| {
            used += 1;
            Ok::<_, ()>(draws.next().unwrap())
        })
        .unwrap();
        assert_eq!(code.0, 999_999);
        assert_eq!(used, u32::MAX - ACCEPT_BELOW + 2);
        assert_eq!(
            code_from(ACCEPT_BELOW - 1).0,
            999_999,
            "the last draw below the bound is accepted"
        );
    }

    #[test]
    fn real_codes_have_no_gross_digit_bias() {
        // 100,000 codes from the CSPRNG; each of the 60 (position, digit)
        // counts has mean 10,000. By the Chernoff bound a fair source strays
        // 10% (1,000) from it with probability at most 2·exp(-0.1²·10⁴/3)
        // ≈ 6.7e-15 per count, under 4e-13 per run for all 60: far below one
        // in a billion. A source stuck on some digits fails every time.
        let n = 100_000u32;
        let counts = digit_counts((0..n).map(|_| Code::generate().unwrap()));
        for (pos, row) in counts.iter().enumerate() {
            assert!(
                row.iter().all(|&c| c.abs_diff(n / 10) < n / 100),
                "position {pos}: {row:?}"
            );
        }
    }

    #[test]
    fn hash_is_lowercase_hex_hmac_of_id_colon_digits() {
        // Reference value computed independently:
        // printf '%s' 'abc:012345' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        let hash = CodeHash::new(SECRET, "abc", &Code(12_345));
        assert_eq!(
            hash.as_str(),
            "6459e2ed9840c36b8f42f71c31d6460918eb7dac14b3ce7de1bcd804515c6845"
        );
    }

    fn hash_of(challenge_id: &str, code: u32) -> String {
        CodeHash::new(SECRET, challenge_id, &Code(code))
            .as_str()
            .to_string()
    }

    fn entry(code_hash: &str, expire_at: i64) -> CodeEntry<'_> {
        CodeEntry {
            code_hash,
            expire_at: EpochSeconds::from(expire_at),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    #[test]
    fn verify_accepts_the_code_in_both_spellings_until_it_expires() {
        let h = hash_of("ch1", 42_017);
        for typed in ["042017", "042-017", " 042017\n", "\t042-017 "] {
            assert!(
                verify(SECRET, "ch1", typed, [entry(&h, 100)], at(99)),
                "{typed:?}"
            );
        }
        let just_before = Timestamp::from_millis(99_999);
        assert!(verify(
            SECRET,
            "ch1",
            "042017",
            [entry(&h, 100)],
            just_before
        ));
        assert!(
            !verify(SECRET, "ch1", "042017", [entry(&h, 100)], at(100)),
            "expireAt == now is expired"
        );
        assert!(!verify(SECRET, "ch1", "042017", [entry(&h, 100)], at(500)));
    }

    #[test]
    fn verify_compares_fractional_expiry_as_a_number() {
        let h = hash_of("ch1", 42_017);
        let e = CodeEntry {
            code_hash: &h,
            expire_at: EpochSeconds::parse("100.5").unwrap(),
        };
        assert!(verify(
            SECRET,
            "ch1",
            "042017",
            [e],
            Timestamp::from_millis(100_499)
        ));
        assert!(!verify(
            SECRET,
            "ch1",
            "042017",
            [e],
            Timestamp::from_millis(100_500)
        ));
    }

    #[test]
    fn verify_finds_a_match_in_the_first_or_the_last_of_several_entries() {
        let right = hash_of("ch1", 42_017);
        let others = [hash_of("ch1", 1), hash_of("ch1", 2), "not-hex".to_string()];
        let mut entries: Vec<CodeEntry> = others.iter().map(|h| entry(h, 100)).collect();
        entries.insert(0, entry(&right, 100));
        assert!(
            verify(SECRET, "ch1", "042017", entries.clone(), at(50)),
            "first"
        );
        entries.rotate_left(1);
        assert!(
            verify(SECRET, "ch1", "042017", entries.clone(), at(50)),
            "last"
        );
        entries.rotate_left(2);
        assert!(verify(SECRET, "ch1", "042017", entries, at(50)), "middle");
    }

    #[test]
    fn verify_reads_every_entry_even_after_a_match() {
        // A match in the first entry must not end the loop: the time taken
        // would then tell which entry matched.
        let right = hash_of("ch1", 42_017);
        let other = hash_of("ch1", 7);
        let entries = [entry(&right, 100), entry(&other, 100), entry(&other, 10)];
        let mut read = 0;
        let counted = entries.iter().copied().inspect(|_| read += 1);
        assert!(verify(SECRET, "ch1", "042017", counted, at(50)));
        assert_eq!(read, entries.len());
    }

    #[test]
    fn verify_with_a_resend_accepts_both_unexpired_codes() {
        let (first, second) = (hash_of("ch1", 111_111), hash_of("ch1", 222_222));
        let codes = [entry(&first, 100), entry(&second, 160)];
        assert!(verify(SECRET, "ch1", "111-111", codes, at(99)));
        assert!(verify(SECRET, "ch1", "222-222", codes, at(99)));
        assert!(!verify(SECRET, "ch1", "333-333", codes, at(99)));
        assert!(
            !verify(SECRET, "ch1", "111-111", codes, at(100)),
            "first expired"
        );
        assert!(verify(SECRET, "ch1", "222-222", codes, at(100)));
    }

    #[test]
    fn verify_refuses_an_expired_entry_even_beside_unexpired_ones() {
        let (right, other) = (hash_of("ch1", 42_017), hash_of("ch1", 7));
        for entries in [
            [entry(&right, 100), entry(&other, 900)],
            [entry(&other, 900), entry(&right, 100)],
        ] {
            assert!(!verify(SECRET, "ch1", "042017", entries, at(100)));
            assert!(verify(SECRET, "ch1", "000007", entries, at(100)));
        }
    }

    #[test]
    fn verify_rejects_wrong_code_challenge_secret_or_malformed_input() {
        let h = hash_of("ch1", 42_017);
        let e = [entry(&h, 100)];
        assert!(!verify(SECRET, "ch1", "042018", e, at(0)));
        assert!(!verify(SECRET, "ch2", "042017", e, at(0)));
        let other_secret = b"another-secret-another-secret-xx";
        assert!(!verify(other_secret, "ch1", "042017", e, at(0)));
        assert!(!verify(SECRET, "ch1", "042017", [], at(0)), "no entries");
        for typed in [
            "",
            "42017",
            "0420170",
            "0425017",
            "04201a",
            "042 017",
            "04-2017",
            "042--017",
            "٠٤٢٠١٧",
            "０４２０１７",
            "042–017",
        ] {
            assert!(!verify(SECRET, "ch1", typed, e, at(0)), "{typed:?}");
        }
        let upper = h.to_uppercase();
        assert!(verify(SECRET, "ch1", "042017", [entry(&upper, 100)], at(0)));
        let spaced = format!("{} {}", &h[..32], &h[32..]);
        let long = format!("{h}00");
        for bad in ["not-hex", &h[..62], "", &spaced, &long] {
            assert!(
                !verify(SECRET, "ch1", "042017", [entry(bad, 100)], at(0)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_code_or_hash() {
        let code = Code(987_654);
        let hash = CodeHash::new(SECRET, "x", &code);
        assert_eq!(
            format!("{code:?} {hash:?}"),
            "Code(<redacted>) CodeHash(<redacted>)"
        );
        let entry = entry(hash.as_str(), 100);
        let shown = format!("{code:?} {hash:?} {entry:?}");
        assert!(!shown.contains("987"));
        assert!(!shown.contains(&hash.as_str()[..8]));
    }
}
