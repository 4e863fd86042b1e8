//! Peer addresses as the tutorial writes them: `ws://host:port`.

use std::fmt;

/// A peer's address.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PeerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl PeerUrl {
    /// Reads `ws://host:port` (a trailing `/` is allowed).
    ///
    /// # Errors
    /// [`PeerUrlError`] saying what is wrong, with the text.
    pub fn parse(text: &str) -> Result<PeerUrl, PeerUrlError> {
        let error = |problem| PeerUrlError {
            text: text.to_owned(),
            problem,
        };
        let rest = text
            .trim()
            .strip_prefix("ws://")
            .ok_or(error(PeerUrlProblem::Scheme))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or(error(PeerUrlProblem::MissingPort))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // A name's letters, digits, `-`, `.` and `_`; an IP address's, with `:` and an IPv6
        // zone's `%`. Nothing else, so an address from a peer or a file cannot carry
        // control characters into logs, or grow when it is written out as JSON.
        let host_character =
            |character: char| character.is_ascii_alphanumeric() || ".-_:%".contains(character);
        if host.is_empty() || host.len() > 100 || !host.chars().all(host_character) {
            return Err(error(PeerUrlProblem::Host));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or(error(PeerUrlProblem::Port))?;
        Ok(PeerUrl {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a text is not a peer address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("peer address {text:?} {problem}")]
pub struct PeerUrlError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub problem: PeerUrlProblem,
}

/// What is wrong with a peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerUrlProblem {
    /// It does not start with `ws://`.
    #[error("must start with ws://")]
    Scheme,
    /// It has no `:port`.
    #[error("needs a port, like ws://localhost:5001")]
    MissingPort,
    /// The host is empty, too long or holds characters a host cannot.
    #[error("has an invalid host")]
    Host,
    /// The port is not a number from 1 to 65535.
    #[error("has an invalid port")]
    Port,
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "ws://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_tutorials_addresses() {
        let url = PeerUrl::parse("ws://localhost:5001").expect("valid");
        assert_eq!((url.host.as_str(), url.port), ("localhost", 5001));
        assert_eq!(url.to_string(), "ws://localhost:5001");
        assert_eq!(
            PeerUrl::parse("ws://[::1]:5002/")
                .expect("valid")
                .to_string(),
            "ws://[::1]:5002"
        );
        for bad in [
            "localhost:5001",
            "ws://localhost",
            "ws://:5001",
            "ws://host:0",
            "ws://host:99999",
            "http://x:1",
            "ws://a b:1",
            "ws://a\u{1b}[31m:1",
            "ws://a\nb:1",
            "ws://user@host:1",
            "ws://hôte:1",
        ] {
            assert!(PeerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
