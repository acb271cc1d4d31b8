//! Contact email addresses: the first contact match key (dedupe and filtering).
//!
//! HubSpot treats the `email` property as the unique, case-insensitive contact identifier and does
//! **not** apply provider-specific rewriting (no Gmail dot removal, no `+tag` stripping), so Spoke
//! does not either: `John.Doe+news@Acme.com` and `johndoe@acme.com` are two different contacts.
//!
//! # Rules
//!
//! 1. **Trim** surrounding whitespace. Empty → [`Rejection::Empty`].
//! 2. **Exactly one `@`**: none → [`Rejection::MissingAt`], several → [`Rejection::MultipleAt`]
//!    (quoted local parts such as `"a@b"@x.com` are not supported; HubSpot refuses them too).
//! 3. **Local part** (before `@`): non-empty ([`Rejection::EmptyLocalPart`]), at most 64 bytes
//!    ([`Rejection::LocalPartTooLong`]), no leading, trailing or doubled dot
//!    ([`Rejection::MisplacedDot`]); ASCII characters limited to letters, digits and
//!    ``!#$%&'*+-/=?^_`{|}~.`` (RFC 5322 `atext`), anything else — space, `,`, `<`, `:`, `"`,
//!    control characters — is [`Rejection::InvalidCharacter`]. Non-ASCII letters are allowed
//!    (RFC 6531), lower-cased and put in Unicode NFC so that composed and decomposed spellings agree.
//! 4. **Domain part** (after `@`): the host rules of [`crate::domain`] — lower-case, IDN → punycode,
//!    one trailing dot removed, shape checks — but **without** stripping `www`, scheme, port or path:
//!    in an email those are either part of the mail domain (`mail.www.example.com`) or an error.
//!    A failure is [`Rejection::EmailDomain`] carrying the domain's own reason.
//! 5. **Lower-case the whole address** (ASCII fast path; `str::to_lowercase` otherwise).
//! 6. At most 254 bytes in total → else [`Rejection::EmailTooLong`].
//!
//! # Examples
//!
//! | input | result |
//! |---|---|
//! | ` John.Doe@Acme.COM ` | `john.doe@acme.com` |
//! | `john+news@acme.com` | `john+news@acme.com` (tag kept) |
//! | `jürgen@bücher.de` | `jürgen@xn--bcher-kva.de` |
//! | `ÅSA@Ålesund.no` | `åsa@xn--lesund-hua.no` |
//! | `info@www.acme.com` | `info@www.acme.com` (`www` kept) |
//! | `john.acme.com` | rejected: no @ |
//! | `john@localhost` | rejected: invalid domain after the @ (no dot) |
//! | `John <john@acme.com>` | rejected: invalid character |

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::Rejection;
use crate::domain::{Domain, normalize_domain, normalize_host};

/// Longest local part in bytes (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_LEN: usize = 64;
/// Longest address in bytes (RFC 5321 path limit minus the angle brackets).
const MAX_EMAIL_LEN: usize = 254;

/// A normalized email address: trimmed, lower-case, IDN domain in punycode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email {
    address: String,
    /// Byte index of the `@` in `address`.
    at: usize,
}

impl Email {
    /// The normalized address, e.g. `john.doe@acme.com`.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The part before the `@`.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The mail domain after the `@`, exactly as normalized (punycode, `www` kept).
    pub fn domain_part(&self) -> &str {
        &self.address[self.at + 1..]
    }

    /// Consumes the email and returns its string.
    pub fn into_string(self) -> String {
        self.address
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.address
    }
}

impl From<Email> for String {
    fn from(email: Email) -> Self {
        email.address
    }
}

impl TryFrom<String> for Email {
    type Error = Rejection;

    /// Normalizes the string (so deserializing `"John@Acme.com"` yields `john@acme.com`).
    fn try_from(value: String) -> Result<Self, Rejection> {
        normalize_email(&value)
    }
}

impl std::str::FromStr for Email {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Rejection> {
        normalize_email(s)
    }
}

/// Normalizes an email field into an [`Email`] (rules in the module docs).
pub fn normalize_email(input: &str) -> Result<Email, Rejection> {
    let s = input.trim();
    if s.is_empty() {
        return Err(Rejection::Empty);
    }
    let mut parts = s.split('@');
    let (Some(local), Some(host)) = (parts.next(), parts.next()) else {
        return Err(Rejection::MissingAt);
    };
    if parts.next().is_some() {
        return Err(Rejection::MultipleAt);
    }
    let local = normalize_local_part(local)?;
    if host.is_empty() {
        return Err(Rejection::EmailDomain(Box::new(Rejection::Empty)));
    }
    let host = normalize_host(host).map_err(|reason| Rejection::EmailDomain(Box::new(reason)))?;
    let at = local.len();
    let mut address = local;
    address.reserve(1 + host.len());
    address.push('@');
    address.push_str(&host);
    if address.len() > MAX_EMAIL_LEN {
        return Err(Rejection::EmailTooLong);
    }
    Ok(Email { address, at })
}

/// The company [`Domain`] of an email address, for matching a contact to a company.
///
/// Unlike [`Email::domain_part`] this applies the company-domain rules, so `info@www.acme.com`
/// gives `acme.com`, comparable with a company's website key.
pub fn email_domain(email: &Email) -> Result<Domain, Rejection> {
    normalize_domain(email.domain_part())
}

/// Rule 3 and the local-part half of rule 5.
fn normalize_local_part(local: &str) -> Result<String, Rejection> {
    if local.is_empty() {
        return Err(Rejection::EmptyLocalPart);
    }
    if let Some(bad) = local.chars().find(|c| !is_local_char(*c)) {
        return Err(Rejection::InvalidCharacter(bad));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(Rejection::MisplacedDot);
    }
    let lower = if local.is_ascii() {
        local.to_ascii_lowercase()
    } else {
        // Lower-casing can decompose (İ → i + U+0307), so compose after it; the result is stable
        // under a second lower-casing, which keeps normalization idempotent.
        local.to_lowercase().nfc().collect()
    };
    if lower.len() > MAX_LOCAL_LEN {
        return Err(Rejection::LocalPartTooLong);
    }
    Ok(lower)
}

/// RFC 5322 `atext` plus `.`, and any non-ASCII character that is not whitespace or a control.
fn is_local_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
    } else {
        !c.is_whitespace() && !c.is_control()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_accepted_inputs() {
        let cases = [
            (" John.Doe@Acme.COM ", "john.doe@acme.com"),
            ("john@acme.com", "john@acme.com"),
            ("JOHN+News@acme.com", "john+news@acme.com"),
            ("j.o.h.n@gmail.com", "j.o.h.n@gmail.com"),
            ("o'brien@acme.ie", "o'brien@acme.ie"),
            ("info@www.acme.com", "info@www.acme.com"),
            ("john@acme.com.", "john@acme.com"),
            ("jürgen@bücher.de", "jürgen@xn--bcher-kva.de"),
            ("ÅSA@Ålesund.no", "åsa@xn--lesund-hua.no"),
            ("anna@zürich.ch", "anna@xn--zrich-kva.ch"),
            ("taro@東京.jp", "taro@xn--1lqs71d.jp"),
            ("ørsted@ørsted.com", "ørsted@xn--rsted-uua.com"),
            // Decomposed ü (u + U+0308) equals the composed one.
            ("ju\u{308}rgen@acme.de", "jürgen@acme.de"),
            ("STRASSE@acme.de", "strasse@acme.de"),
            ("straße@acme.de", "straße@acme.de"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_email(input).map(Email::into_string),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn rejects_invalid_addresses_with_a_reason() {
        let long_local = format!("{}@acme.com", "a".repeat(65));
        let long_total = format!("{}@{}com", "a".repeat(60), "abcdefghi.".repeat(20));
        let cases = [
            ("", Rejection::Empty),
            ("  ", Rejection::Empty),
            ("john.acme.com", Rejection::MissingAt),
            ("a@b@acme.com", Rejection::MultipleAt),
            ("@acme.com", Rejection::EmptyLocalPart),
            ("john doe@acme.com", Rejection::InvalidCharacter(' ')),
            ("John <john@acme.com>", Rejection::InvalidCharacter(' ')),
            ("mailto:john@acme.com", Rejection::InvalidCharacter(':')),
            ("john,doe@acme.com", Rejection::InvalidCharacter(',')),
            (".john@acme.com", Rejection::MisplacedDot),
            ("john.@acme.com", Rejection::MisplacedDot),
            ("jo..hn@acme.com", Rejection::MisplacedDot),
            (long_local.as_str(), Rejection::LocalPartTooLong),
            (long_total.as_str(), Rejection::EmailTooLong),
            ("john@", Rejection::EmailDomain(Box::new(Rejection::Empty))),
            (
                "john@localhost",
                Rejection::EmailDomain(Box::new(Rejection::SingleLabel)),
            ),
            (
                "john@[10.0.0.1]",
                Rejection::EmailDomain(Box::new(Rejection::IpAddress)),
            ),
            (
                "john@acme..com",
                Rejection::EmailDomain(Box::new(Rejection::EmptyLabel)),
            ),
            (
                "john@acme.com/about",
                Rejection::EmailDomain(Box::new(Rejection::InvalidCharacter('/'))),
            ),
            (
                "john@acme com",
                Rejection::EmailDomain(Box::new(Rejection::ContainsSpace)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_email(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn parts_and_company_domain() {
        let email = normalize_email("Info@WWW.Bücher.de").unwrap();
        assert_eq!(email.local_part(), "info");
        assert_eq!(email.domain_part(), "www.xn--bcher-kva.de");
        assert_eq!(
            email_domain(&email).map(Domain::into_string),
            Ok("xn--bcher-kva.de".to_owned())
        );
    }
}
