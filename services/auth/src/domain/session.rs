//! What a session shows its owner about the client that logged in, read from the
//! request the edge forwarded.

use bulwark_kernel::tonic::metadata::MetadataMap;

/// Longest client address kept (an IPv6 address with a zone fits).
const MAX_IP_CHARS: usize = 64;
/// Longest `User-Agent` kept; longer ones are cut.
const MAX_USER_AGENT_CHARS: usize = 256;

/// The client of a login, as shown in the session list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The address the edge saw: the last `x-forwarded-for` entry, which Envoy appends
    /// itself (`use_remote_address`), so a client cannot choose it. Empty if absent.
    pub ip: String,
    /// The client's `User-Agent`, printable characters only, cut to 256.
    pub user_agent: String,
}

impl ClientInfo {
    /// Reads the client from gRPC request metadata; what is missing or unreadable is
    /// left empty.
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
        };
        let ip = text("x-forwarded-for")
            .rsplit(',')
            .next()
            .map(str::trim)
            .filter(|ip| ip.len() <= MAX_IP_CHARS && ip.parse::<std::net::IpAddr>().is_ok())
            .unwrap_or_default()
            .to_owned();
        let user_agent = text("user-agent")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_USER_AGENT_CHARS)
            .collect();
        Self { ip, user_agent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("valid metadata value"));
        }
        map
    }

    #[test]
    fn the_last_forwarded_address_is_the_one_envoy_saw() {
        let info = ClientInfo::from_metadata(&metadata(&[
            ("x-forwarded-for", "10.9.9.9, 203.0.113.7"),
            ("user-agent", "curl/8.5.0"),
        ]));
        assert_eq!(info.ip, "203.0.113.7");
        assert_eq!(info.user_agent, "curl/8.5.0");
    }

    #[test]
    fn what_is_not_an_address_is_left_out() {
        for forwarded in ["", "not-an-ip", "1.2.3.4, <script>", "1.2.3.4,"] {
            let info = ClientInfo::from_metadata(&metadata(&[("x-forwarded-for", forwarded)]));
            assert_eq!(info.ip, "", "{forwarded:?}");
        }
        assert_eq!(
            ClientInfo::from_metadata(&metadata(&[("x-forwarded-for", "::1")])).ip,
            "::1"
        );
        assert_eq!(
            ClientInfo::from_metadata(&MetadataMap::new()),
            ClientInfo::default()
        );
    }

    #[test]
    fn a_long_user_agent_is_cut_to_256_characters() {
        let long = "a".repeat(300);
        let info = ClientInfo::from_metadata(&metadata(&[("user-agent", long.as_str())]));
        assert_eq!(info.user_agent, long[..256]);
    }
}
