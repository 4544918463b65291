//! Who is calling, as the rate limit counts it: an IPv4 address, an IPv6
//! network, or the shared unknown bucket.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The rate-limited identity of a caller: an IPv4 address, an IPv6 network
/// of `RATE_LIMIT_IPV6_PREFIX` bits, or the single shared bucket `unknown`
/// when the front door gave no address we can trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerIp {
    /// An IPv4 caller (an IPv4-mapped IPv6 address folds to this).
    V4(std::net::Ipv4Addr),
    /// An IPv6 caller's network: host bits cleared, with its prefix length.
    V6 {
        /// The network address.
        network: Ipv6Addr,
        /// Prefix length in bits (128: the address itself).
        prefix: u8,
    },
    /// No usable address: counted together with every other such request.
    Unknown,
}

/// Printed as the counter key needs it: `198.51.100.7`, `2001:db8:1:2::/64`,
/// a plain IPv6 address at prefix 128, or `unknown`.
impl fmt::Display for CallerIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => write!(f, "{ip}"),
            Self::V6 {
                network,
                prefix: 128,
            } => write!(f, "{network}"),
            Self::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

impl CallerIp {
    /// The caller for a raw address string; IPv6 callers are grouped by
    /// `ipv6_prefix` bits (clamped to 0–128).
    pub fn parse(raw: Option<&str>, ipv6_prefix: u8) -> Self {
        match raw.and_then(|s| s.trim().parse::<IpAddr>().ok()) {
            None => Self::Unknown,
            Some(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => Self::V4(v4),
                IpAddr::V6(v6) => {
                    let prefix = ipv6_prefix.min(128);
                    let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
                    Self::V6 {
                        network: Ipv6Addr::from(u128::from(v6) & mask),
                        prefix,
                    }
                }
            },
        }
    }
}
