//! Company domains: the only company match key of dedupe and the first one of filtering.
//!
//! HubSpot does not enforce domain uniqueness, so Spoke must; two spellings of one website must
//! produce the same [`Domain`], and anything that is not a website domain must be rejected with a
//! reason instead of producing a key that matches nothing (or, worse, everything).
//!
//! # Rules, in the order they are applied
//!
//! 1. **Trim** surrounding whitespace (Unicode `White_Space`). Empty → [`Rejection::Empty`].
//! 2. **`mailto:`** prefix → [`Rejection::EmailGivenForDomain`].
//! 3. **Scheme**: any `scheme://` prefix (`http`, `https`, `ftp`, ...; case-insensitive; a scheme is a
//!    letter followed by letters, digits, `+`, `-`, `.`) is removed, as is a protocol-relative `//`.
//! 4. **Path, query, fragment**: everything from the first `/`, `?` or `#` is removed.
//! 5. **Userinfo**: with a scheme, everything up to the last `@` is removed
//!    (`https://user:pw@acme.com` → `acme.com`). *Without* a scheme an `@` means somebody typed an
//!    email address into a domain field → [`Rejection::EmailGivenForDomain`].
//! 6. **Whitespace** left in the host (`acme .com`, `Acme Inc`) → [`Rejection::ContainsSpace`].
//! 7. **IP addresses** (`[::1]`, `2001:db8::1`, `10.0.0.1`) → [`Rejection::IpAddress`].
//! 8. **Port**: a trailing `:digits` (or a bare `:`) is removed; `:` followed by anything else →
//!    [`Rejection::InvalidPort`].
//! 9. **Characters**: ASCII characters other than letters, digits, `-` and `.` →
//!    [`Rejection::InvalidCharacter`] (so `_`, `!`, `,` are refused: they never occur in a website host).
//! 10. **Lower-case and IDN**: ASCII hosts are lower-cased directly (fast path, no IDN work unless a
//!     label is already punycode `xn--`, which is then validated). Hosts with non-ASCII characters
//!     go through UTS-46 ToASCII (non-transitional, STD3 rules), which lower-cases, applies NFC and
//!     width folding (`ＡＣＭＥ．com` → `acme.com`, ideographic full stop `。` → `.`), and encodes
//!     each label as punycode. Refused by UTS-46 → [`Rejection::InvalidIdn`].
//! 11. **Trailing dot**: one trailing dot (the DNS root) is removed: `acme.com.` → `acme.com`.
//! 12. **Shape**: empty labels ([`Rejection::EmptyLabel`]), labels over 63 characters
//!     ([`Rejection::LabelTooLong`]), over 253 characters in total ([`Rejection::DomainTooLong`]),
//!     labels starting or ending with `-` ([`Rejection::HyphenAtLabelEdge`]), a single label
//!     ([`Rejection::SingleLabel`]), an all-numeric last label ([`Rejection::IpAddress`] when the
//!     whole host is an IPv4 address, else [`Rejection::NumericTopLevel`]).
//! 13. **`www`**: a leading label `www` optionally followed by digits (`www`, `www1`, `www2`, ...)
//!     is removed, repeatedly, as long as at least two labels remain. `www2.` is treated like `www.`
//!     because numbered `www` hosts are mirrors of the same company website, never a different
//!     company. Only the *leading* label is touched (`shop.www.acme.com` stays), and a registrable
//!     name is never eaten (`www.com` stays `www.com`). Other prefixes (`m.`, `en.`, `web.`) are
//!     kept: they can be separately owned hosts. No public-suffix list is consulted, so
//!     `www.co.uk` becomes `co.uk`; such input is not a company website anyway.
//!
//! The result is ASCII, lower-case, without trailing dot, and normalizing it again returns it
//! unchanged (property-tested).
//!
//! # Examples
//!
//! | input | result |
//! |---|---|
//! | ` HTTPS://WWW.Zoominfo.com:443/about?x=1 ` | `zoominfo.com` |
//! | `http://user:pw@www2.acme.com/` | `acme.com` |
//! | `bücher.de` | `xn--bcher-kva.de` |
//! | `münchen.DE.` | `xn--mnchen-3ya.de` |
//! | `zürich.ch` | `xn--zrich-kva.ch` |
//! | `ålesund.no` | `xn--lesund-hua.no` |
//! | `東京.jp` | `xn--1lqs71d.jp` |
//! | `ørsted.com` | `xn--rsted-uua.com` |
//! | `straße.de` | `xn--strae-oqa.de` (not `strasse.de`, see below) |
//! | `www.com` | `www.com` |
//! | `john@acme.com` | rejected: email address given |
//! | `localhost` | rejected: no dot |
//! | `192.168.0.1` | rejected: IP address |
//! | `acme_corp.com` | rejected: invalid character `_` |
//!
//! **ß vs ss**: UTS-46 non-transitional processing (IDNA2008, what browsers and registries such as
//! DENIC use today) keeps `ß`, so `straße.de` and `strasse.de` are two different domains that may
//! belong to different owners, and they get different keys.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};

use crate::Rejection;

/// Longest domain in ASCII form (RFC 1035, without the root dot).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest label in ASCII form (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A normalized company domain: ASCII, lower-case, punycode for IDNs, no `www.`, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// The normalized domain, e.g. `zoominfo.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the domain and returns its string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The domain for display: punycode labels decoded to Unicode (`xn--bcher-kva.de` → `bücher.de`).
    pub fn to_unicode(&self) -> String {
        // The value is valid IDNA by construction, so decoding cannot fail; on the impossible
        // error path UTS-46 still returns a displayable string.
        idna::domain_to_unicode(&self.0).0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Domain> for String {
    fn from(domain: Domain) -> Self {
        domain.0
    }
}

impl TryFrom<String> for Domain {
    type Error = Rejection;

    /// Normalizes the string (so deserializing `"WWW.Acme.com"` yields `acme.com`).
    fn try_from(value: String) -> Result<Self, Rejection> {
        normalize_domain(&value)
    }
}

impl std::str::FromStr for Domain {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Rejection> {
        normalize_domain(s)
    }
}

/// Normalizes a website or domain field into a [`Domain`] (rules in the module docs).
pub fn normalize_domain(input: &str) -> Result<Domain, Rejection> {
    let host = extract_host(input)?;
    let mut ascii = normalize_host(host)?;
    strip_www(&mut ascii);
    Ok(Domain(ascii))
}

/// Rules 1–8: cuts the host out of a URL-ish input, without changing its characters.
fn extract_host(input: &str) -> Result<&str, Rejection> {
    let s = input.trim();
    if s.is_empty() {
        return Err(Rejection::Empty);
    }
    if starts_with_ignore_ascii_case(s, "mailto:") {
        return Err(Rejection::EmailGivenForDomain);
    }
    let (rest, had_scheme) = strip_scheme(s);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let mut authority = &rest[..authority_end];
    if let Some(at) = authority.rfind('@') {
        if !had_scheme {
            return Err(Rejection::EmailGivenForDomain);
        }
        authority = &authority[at + 1..];
    }
    if authority.is_empty() {
        return Err(Rejection::Empty);
    }
    if authority.chars().any(char::is_whitespace) {
        return Err(Rejection::ContainsSpace);
    }
    if authority.starts_with('[') || authority.parse::<Ipv6Addr>().is_ok() {
        return Err(Rejection::IpAddress);
    }
    let host = match authority.rfind(':') {
        Some(colon) => {
            let port = &authority[colon + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Rejection::InvalidPort);
            }
            &authority[..colon]
        }
        None => authority,
    };
    if host.is_empty() {
        return Err(Rejection::Empty);
    }
    Ok(host)
}

/// Removes `scheme://` or a protocol-relative `//`; says whether one was present.
fn strip_scheme(s: &str) -> (&str, bool) {
    if let Some(rest) = s.strip_prefix("//") {
        return (rest, true);
    }
    if let Some(pos) = s.find("://") {
        let scheme = &s[..pos];
        let mut bytes = scheme.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if valid {
            return (&s[pos + 3..], true);
        }
    }
    (s, false)
}

fn starts_with_ignore_ascii_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Rules 9–12 for a bare host: lower-case/IDN to ASCII, trailing dot, shape checks.
///
/// Shared with email normalization, which must not strip `www`, ports or paths.
pub(crate) fn normalize_host(host: &str) -> Result<String, Rejection> {
    if host.starts_with('[') {
        return Err(Rejection::IpAddress);
    }
    // Report a specific ASCII character before UTS-46 gets a chance to say only "invalid IDN".
    if let Some(bad) = host
        .chars()
        .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(if bad.is_ascii_whitespace() {
            Rejection::ContainsSpace
        } else {
            Rejection::InvalidCharacter(bad)
        });
    }
    let mut ascii = if host.is_ascii() {
        let lower = host.to_ascii_lowercase();
        if lower.split('.').any(|label| label.starts_with("xn--")) {
            // Punycode typed by hand (or produced by us): let UTS-46 prove it decodes to a valid IDN.
            to_ascii_idn(&lower)?
        } else {
            lower
        }
    } else {
        if host.chars().any(char::is_whitespace) {
            return Err(Rejection::ContainsSpace);
        }
        to_ascii_idn(host)?
    };
    if ascii.ends_with('.') {
        ascii.pop();
    }
    check_shape(&ascii)?;
    Ok(ascii)
}

fn to_ascii_idn(host: &str) -> Result<String, Rejection> {
    Uts46::new()
        .to_ascii(
            host.as_bytes(),
            AsciiDenyList::STD3,
            // Hyphen placement is checked by `check_shape` with a precise reason.
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| Rejection::InvalidIdn)
}

/// Rule 12 on an ASCII, lower-case host without trailing dot.
fn check_shape(ascii: &str) -> Result<(), Rejection> {
    if ascii.is_empty() {
        return Err(Rejection::Empty);
    }
    if ascii.len() > MAX_DOMAIN_LEN {
        return Err(Rejection::DomainTooLong);
    }
    let mut labels = 0usize;
    let mut last = "";
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(Rejection::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(Rejection::LabelTooLong);
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(Rejection::InvalidCharacter(bad));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(Rejection::HyphenAtLabelEdge);
        }
        labels += 1;
        last = label;
    }
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if ascii.parse::<Ipv4Addr>().is_ok() {
            Rejection::IpAddress
        } else {
            Rejection::NumericTopLevel
        });
    }
    if labels < 2 {
        return Err(Rejection::SingleLabel);
    }
    Ok(())
}

/// Rule 13: drops leading `www`/`wwwN` labels while two labels remain.
fn strip_www(domain: &mut String) {
    loop {
        let Some(dot) = domain.find('.') else { return };
        let first = &domain[..dot];
        let is_www = first
            .strip_prefix("www")
            .is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()));
        if !is_www || !domain[dot + 1..].contains('.') {
            return;
        }
        domain.replace_range(..=dot, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_accepted_inputs() {
        let cases = [
            (" HTTPS://WWW.Zoominfo.com:443/about?x=1 ", "zoominfo.com"),
            ("zoominfo.com", "zoominfo.com"),
            ("ZoomInfo.COM", "zoominfo.com"),
            ("http://acme.com", "acme.com"),
            ("ftp://acme.com/pub", "acme.com"),
            ("git+ssh://acme.com", "acme.com"),
            ("//acme.com/x", "acme.com"),
            ("acme.com/about us", "acme.com"),
            ("acme.com?q=1", "acme.com"),
            ("acme.com#top", "acme.com"),
            ("acme.com:8080", "acme.com"),
            ("acme.com:", "acme.com"),
            ("acme.com.", "acme.com"),
            ("https://user:pw@www.acme.com/", "acme.com"),
            ("https://a@b@acme.com", "acme.com"),
            ("www.acme.com", "acme.com"),
            ("www2.acme.com", "acme.com"),
            ("WWW10.acme.com", "acme.com"),
            ("www.www.acme.com", "acme.com"),
            ("www.com", "www.com"),
            ("www.www.com", "www.com"),
            ("wwwx.acme.com", "wwwx.acme.com"),
            ("shop.www.acme.com", "shop.www.acme.com"),
            ("m.acme.com", "m.acme.com"),
            ("acme.co.uk", "acme.co.uk"),
            ("a-b.com", "a-b.com"),
            ("3m.com", "3m.com"),
            ("\u{a0}acme.com\t", "acme.com"),
            // IDN
            ("bücher.de", "xn--bcher-kva.de"),
            ("münchen.DE.", "xn--mnchen-3ya.de"),
            ("MÜNCHEN.de", "xn--mnchen-3ya.de"),
            ("zürich.ch", "xn--zrich-kva.ch"),
            ("https://www.Zürich.ch/de", "xn--zrich-kva.ch"),
            ("ålesund.no", "xn--lesund-hua.no"),
            ("東京.jp", "xn--1lqs71d.jp"),
            ("ørsted.com", "xn--rsted-uua.com"),
            ("straße.de", "xn--strae-oqa.de"),
            ("strasse.de", "strasse.de"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
            ("ＡＣＭＥ．com", "acme.com"),
            ("acme。com", "acme.com"),
            ("www。acme。com。", "acme.com"),
            // UTS-46 maps invisible zero-width space to nothing.
            ("ac\u{200b}me.com", "acme.com"),
            // NFD input (u + combining diaeresis) equals the precomposed form.
            ("bu\u{308}cher.de", "xn--bcher-kva.de"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_domain(input).map(Domain::into_string),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn rejects_non_domains_with_a_reason() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_domain = format!("{}com", "abcdefghi.".repeat(26));
        let cases = [
            ("", Rejection::Empty),
            ("   ", Rejection::Empty),
            ("https://", Rejection::Empty),
            ("https:///path", Rejection::Empty),
            ("acme .com", Rejection::ContainsSpace),
            ("Acme Inc", Rejection::ContainsSpace),
            ("acme.com /about", Rejection::ContainsSpace),
            ("localhost", Rejection::SingleLabel),
            ("acme", Rejection::SingleLabel),
            ("acme_corp.com", Rejection::InvalidCharacter('_')),
            ("acme!.com", Rejection::InvalidCharacter('!')),
            ("acme,com", Rejection::InvalidCharacter(',')),
            ("acme\\com", Rejection::InvalidCharacter('\\')),
            ("acme..com", Rejection::EmptyLabel),
            (".acme.com", Rejection::EmptyLabel),
            ("acme.com..", Rejection::EmptyLabel),
            ("-acme.com", Rejection::HyphenAtLabelEdge),
            ("acme-.com", Rejection::HyphenAtLabelEdge),
            ("192.168.0.1", Rejection::IpAddress),
            ("http://10.0.0.1:8080/x", Rejection::IpAddress),
            ("[::1]", Rejection::IpAddress),
            ("2001:db8::1", Rejection::IpAddress),
            ("acme.123", Rejection::NumericTopLevel),
            (long_label.as_str(), Rejection::LabelTooLong),
            (long_domain.as_str(), Rejection::DomainTooLong),
            ("john@acme.com", Rejection::EmailGivenForDomain),
            ("mailto:john@acme.com", Rejection::EmailGivenForDomain),
            ("MAILTO:john@acme.com", Rejection::EmailGivenForDomain),
            ("acme.com:http", Rejection::InvalidPort),
            ("xn--zz.com", Rejection::InvalidIdn),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_domain(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn unicode_display_decodes_punycode() {
        let domain = normalize_domain("https://www.bücher.de/").unwrap();
        assert_eq!(domain.as_str(), "xn--bcher-kva.de");
        assert_eq!(domain.to_unicode(), "bücher.de");
    }

    #[test]
    fn serde_normalizes_on_the_way_in_and_writes_the_plain_string() {
        let domain: Domain = serde_json::from_str("\"WWW.Acme.com\"").unwrap();
        assert_eq!(domain.as_str(), "acme.com");
        assert_eq!(serde_json::to_string(&domain).unwrap(), "\"acme.com\"");
        assert!(serde_json::from_str::<Domain>("\"not a domain\"").is_err());
    }
}
