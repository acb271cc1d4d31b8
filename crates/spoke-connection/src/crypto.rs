//! Encryption of HubSpot tokens at rest (AES-256-GCM with key ids for rotation) and signing of OAuth
//! states (HMAC-SHA256).

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::{TokensConfig, decode_key};
use crate::error::{Error, Result};

const NONCE_LEN: usize = 12;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encrypts and decrypts tokens; the current key encrypts, every known key decrypts.
pub struct TokenCipher {
    current_id: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCipher")
            .field("current_id", &self.current_id)
            .finish_non_exhaustive()
    }
}

/// A token encrypted with key `key_id`: nonce followed by ciphertext and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Key id used.
    pub key_id: String,
    /// Nonce ‖ ciphertext ‖ tag.
    pub bytes: Vec<u8>,
}

impl TokenCipher {
    /// Builds the cipher from config; returns the raw current key too (the state key may derive from it).
    pub fn from_config(cfg: &TokensConfig) -> Result<(Self, [u8; 32])> {
        let current = match &cfg.encryption_key {
            Some(k) => decode_key(k).ok_or_else(|| {
                Error::Config("tokens.encryption_key must be base64 of 32 bytes".into())
            })?,
            None => {
                tracing::error!(
                    "tokens.encryption_key is not set: using a random per-process key; stored HubSpot tokens will be unreadable after a restart (set SPOKE_TOKENS__ENCRYPTION_KEY)"
                );
                let mut k = [0u8; 32];
                rand::rng().fill_bytes(&mut k);
                k
            }
        };
        let mut keys = HashMap::new();
        keys.insert(cfg.key_id.clone(), Aes256Gcm::new(&current.into()));
        for (id, k) in &cfg.previous_keys {
            let raw = decode_key(k).ok_or_else(|| {
                Error::Config(format!(
                    "tokens.previous_keys.{id} must be base64 of 32 bytes"
                ))
            })?;
            keys.insert(id.clone(), Aes256Gcm::new(&raw.into()));
        }
        Ok((
            Self {
                current_id: cfg.key_id.clone(),
                keys,
            },
            current,
        ))
    }

    /// The id of the key new ciphertexts use.
    pub fn current_key_id(&self) -> &str {
        &self.current_id
    }

    /// Encrypts `plain`, bound to `context` (org, user and token kind) so ciphertexts cannot be swapped.
    pub fn seal(&self, plain: &SecretString, context: &str) -> Result<Sealed> {
        let cipher = self
            .keys
            .get(&self.current_id)
            .ok_or_else(|| Error::Config("current token key missing".into()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::Crypto("encrypting a token failed".into()))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ct);
        Ok(Sealed {
            key_id: self.current_id.clone(),
            bytes,
        })
    }

    /// Decrypts a token sealed with any known key.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<SecretString> {
        let cipher = self.keys.get(&sealed.key_id).ok_or_else(|| {
            Error::Crypto(format!(
                "token encrypted with unknown key id {:?}; add it to tokens.previous_keys",
                sealed.key_id
            ))
        })?;
        if sealed.bytes.len() <= NONCE_LEN {
            return Err(Error::Crypto("stored token ciphertext is truncated".into()));
        }
        let (nonce, ct) = sealed.bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::Crypto("stored token nonce is malformed".into()))?;
        let plain = cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::Crypto("stored token does not decrypt with its key".into()))?;
        let s = String::from_utf8(plain)
            .map_err(|_| Error::Crypto("stored token is not text".into()))?;
        Ok(SecretString::from(s))
    }
}

/// Which flow a state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Initial connect (StartConnect).
    Connect,
    /// Change User (StartChangePrimaryUser).
    ChangePrimary,
    /// A user's own connection (StartUserConnect).
    UserConnect,
}

impl Flow {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Connect => "connect",
            Flow::ChangePrimary => "change_primary",
            Flow::UserConnect => "user_connect",
        }
    }
}

/// What a signed state says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateClaims {
    /// State row id.
    pub id: uuid::Uuid,
    /// Org.
    pub org: String,
    /// Provider user who started the flow.
    pub sub: String,
    /// Flow.
    pub flow: Flow,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Signs and verifies OAuth states.
pub struct StateSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSigner([REDACTED])")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl StateSigner {
    /// A signer with an explicit key, or one derived from the token encryption key.
    pub fn new(explicit: Option<&SecretString>, encryption_key: &[u8; 32]) -> Result<Self> {
        let key = match explicit {
            Some(k) => k.expose_secret().as_bytes().to_vec(),
            None => {
                // A distinct derived key keeps the encryption key out of any HMAC use.
                let mut mac = <HmacSha256 as Mac>::new_from_slice(encryption_key)
                    .map_err(|_| Error::Config("state key derivation failed".into()))?;
                mac.update(b"spoke-connection oauth state v1");
                mac.finalize().into_bytes().to_vec()
            }
        };
        Ok(Self { key })
    }

    fn mac(&self, data: &[u8]) -> Result<HmacSha256> {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .map_err(|_| Error::Config("bad state signing key".into()))?;
        mac.update(data);
        Ok(mac)
    }

    /// `base64(claims).base64(hmac)`.
    pub fn sign(&self, claims: &StateClaims) -> Result<String> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| Error::Crypto(format!("encoding state: {e}")))?;
        let body = B64.encode(payload);
        let sig = self.mac(body.as_bytes())?.finalize().into_bytes();
        Ok(format!("{body}.{}", B64.encode(sig)))
    }

    /// Verifies the signature and expiry (`now` in seconds since the epoch).
    pub fn verify(&self, state: &str, now: i64) -> Result<StateClaims> {
        let invalid = |why: &str| Error::InvalidArgument(format!("state: {why}"));
        let (body, sig) = state
            .split_once('.')
            .ok_or_else(|| invalid("unknown state (malformed)"))?;
        let sig = B64
            .decode(sig)
            .map_err(|_| invalid("unknown state (malformed)"))?;
        self.mac(body.as_bytes())?
            .verify_slice(&sig)
            .map_err(|_| invalid("unknown state (bad signature)"))?;
        let payload = B64
            .decode(body)
            .map_err(|_| invalid("unknown state (malformed)"))?;
        let claims: StateClaims =
            serde_json::from_slice(&payload).map_err(|_| invalid("unknown state (malformed)"))?;
        if claims.exp < now {
            return Err(invalid("expired; start the connect flow again"));
        }
        Ok(claims)
    }
}

/// SHA-256 hex of an authorization code (stored to recognise retries without keeping the code).
pub fn code_hash(code: &str) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(code.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(key: &[u8; 32], id: &str) -> TokensConfig {
        TokensConfig {
            encryption_key: Some(SecretString::from(
                base64::engine::general_purpose::STANDARD.encode(key),
            )),
            key_id: id.into(),
            ..TokensConfig::default()
        }
    }

    #[test]
    fn sealed_tokens_round_trip_and_hide_the_plaintext() {
        let (c, _) = TokenCipher::from_config(&cfg(&[7; 32], "k1")).unwrap();
        let s = c
            .seal(&SecretString::from("at-secret-123"), "org|u|access")
            .unwrap();
        assert_eq!(s.key_id, "k1");
        assert!(!s.bytes.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            c.open(&s, "org|u|access").unwrap().expose_secret(),
            "at-secret-123"
        );
        // Another context (e.g. another org's row) does not decrypt.
        assert!(c.open(&s, "org2|u|access").is_err());
        // Same plaintext twice gives different ciphertexts (random nonce).
        let s2 = c
            .seal(&SecretString::from("at-secret-123"), "org|u|access")
            .unwrap();
        assert_ne!(s.bytes, s2.bytes);
    }

    #[test]
    fn rotation_decrypts_with_previous_keys_and_encrypts_with_the_current() {
        let (old, _) = TokenCipher::from_config(&cfg(&[1; 32], "k1")).unwrap();
        let sealed = old.seal(&SecretString::from("rt-1"), "ctx").unwrap();
        let mut new_cfg = cfg(&[2; 32], "k2");
        new_cfg.previous_keys.insert(
            "k1".into(),
            SecretString::from(base64::engine::general_purpose::STANDARD.encode([1u8; 32])),
        );
        let (new, _) = TokenCipher::from_config(&new_cfg).unwrap();
        assert_eq!(new.open(&sealed, "ctx").unwrap().expose_secret(), "rt-1");
        assert_eq!(
            new.seal(&SecretString::from("x"), "ctx").unwrap().key_id,
            "k2"
        );
        let (unknown, _) = TokenCipher::from_config(&cfg(&[3; 32], "k3")).unwrap();
        let err = unknown.open(&sealed, "ctx").unwrap_err().to_string();
        assert!(err.contains("k1") && !err.contains("rt-1"), "{err}");
    }

    #[test]
    fn states_verify_and_reject_tampering_and_expiry() {
        let signer = StateSigner::new(None, &[9; 32]).unwrap();
        let claims = StateClaims {
            id: uuid::Uuid::now_v7(),
            org: "org-1".into(),
            sub: "u1".into(),
            flow: Flow::Connect,
            exp: 1_000,
        };
        let state = signer.sign(&claims).unwrap();
        assert_eq!(signer.verify(&state, 999).unwrap(), claims);
        let cases = [
            (state.replacen('e', "f", 1), 999, "unknown state"),
            (format!("{state}x"), 999, "unknown state"),
            ("garbage".to_string(), 999, "unknown state"),
            (state.clone(), 1_001, "expired"),
        ];
        for (s, now, want) in cases {
            let err = signer.verify(&s, now).unwrap_err().to_string();
            assert!(err.contains(want), "{s}: {err}");
        }
        let other = StateSigner::new(Some(&SecretString::from("other")), &[9; 32]).unwrap();
        assert!(other.verify(&state, 999).is_err());
    }
}
