//! Roundtrip tokens: `sha256(secret || the host's 4 octets)`, two secrets rotated every five
//! minutes (the reference hashes the dotted host string; a token is opaque to everyone but
//! its issuer, and the octets spare a formatting and an allocation per answer). A token proves that the requester received an earlier response at its address,
//! so an update (an announce) cannot come from a spoofed source.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// The current and previous token secrets.
#[derive(Debug, Clone)]
pub struct Tokens {
    secrets: [[u8; 32]; 2],
}

impl Tokens {
    /// Tokens from two initial secrets.
    pub fn new(current: [u8; 32], previous: [u8; 32]) -> Self {
        Tokens {
            secrets: [current, previous],
        }
    }

    /// Makes `secret` current; the current one becomes the previous.
    pub fn rotate(&mut self, secret: [u8; 32]) {
        self.secrets[1] = self.secrets[0];
        self.secrets[0] = secret;
    }

    fn token(secret: &[u8; 32], host: Ipv4Addr) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(host.octets());
        h.finalize().into()
    }

    /// The token to hand `host` now.
    pub fn issue(&self, host: Ipv4Addr) -> [u8; 32] {
        Self::token(&self.secrets[0], host)
    }

    /// Whether `token` is one we handed `host` under the current or previous secret.
    pub fn is_valid(&self, host: Ipv4Addr, token: &[u8]) -> bool {
        token.len() == 32
            && self
                .secrets
                .iter()
                .any(|s| Self::token(s, host).as_slice() == token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_one_rotation_and_bind_to_the_host() {
        let mut t = Tokens::new([1; 32], [2; 32]);
        let host = Ipv4Addr::new(10, 1, 2, 3);
        let tok = t.issue(host);
        assert!(t.is_valid(host, &tok));
        assert!(!t.is_valid(Ipv4Addr::new(10, 1, 2, 4), &tok));
        assert!(!t.is_valid(host, &tok[..31]));
        t.rotate([3; 32]);
        assert!(t.is_valid(host, &tok), "previous secret still accepted");
        t.rotate([4; 32]);
        assert!(!t.is_valid(host, &tok), "two rotations later it expires");
    }

    #[test]
    fn hashes_the_secret_then_the_octets() {
        // sha256(secret || 127 0 0 1). The reference hashes the dotted string; a token is
        // opaque to all but its issuer, so the two need not agree (and never meet).
        let t = Tokens::new([0; 32], [0; 32]);
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update([127, 0, 0, 1]);
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(t.issue(Ipv4Addr::LOCALHOST), want);
    }
}
