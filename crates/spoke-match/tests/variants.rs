//! Bad-input properties (issue 12, item 5): spellings of one website give one key, the Unicode
//! and punycode forms of an IDN give one key, case never matters for emails, and no input of any
//! size or content panics a normalizer.

use proptest::prelude::*;
use spoke_match::{
    company_name_exact, company_name_loose, email_domain, normalize_country, normalize_domain,
    normalize_email, normalize_person_name,
};

/// A registrable host: 1..3 labels of letters, digits and inner hyphens, then a letter TLD.
fn host() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", 1..3),
        "[a-z]{2,6}",
    )
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
        // `www` (and `www7`) as a first label is stripped by rule: keep the base host free of it.
        .prop_filter("no leading www label", |h| {
            let first = h.split('.').next().unwrap_or("");
            !(first.starts_with("www") && first[3..].chars().all(|c| c.is_ascii_digit()))
        })
}

/// A host with non-ASCII letters (valid IDN labels).
fn idn_host() -> impl Strategy<Value = String> {
    (
        "[a-zäöüåøé東京한]{1,8}",
        "[a-z]{0,6}",
        proptest::sample::select(&["de", "com", "jp", "no", "ch"][..]),
    )
        .prop_map(|(a, b, tld)| format!("{a}{b}.{tld}"))
}

/// Randomly flips the case of ASCII letters.
fn recase(s: &str, mask: &[bool]) -> String {
    s.chars()
        .zip(mask.iter().cycle())
        .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Case, scheme, `www.`, port, path, query, fragment and a trailing dot are spellings of the
    /// same website: one key.
    #[test]
    fn website_spellings_share_one_key(
        host in host(),
        mask in proptest::collection::vec(any::<bool>(), 1..8),
        scheme in proptest::sample::select(&["", "http://", "https://", "HTTPS://", "//"][..]),
        www in proptest::sample::select(&["", "www.", "WWW.", "www2."][..]),
        port in proptest::sample::select(&["", ":80", ":443", ":8080"][..]),
        tail in proptest::sample::select(&["", "/", "/about", "/a/b?x=1", "?q", "#top", "/path#f"][..]),
        dot in proptest::sample::select(&["", "."][..]),
    ) {
        let base = normalize_domain(&host);
        prop_assert!(base.is_ok(), "{host:?}: {base:?}");
        let base = base.unwrap();
        let variant = format!("{scheme}{www}{}{dot}{port}{tail}", recase(&host, &mask));
        prop_assert_eq!(normalize_domain(&variant), Ok(base.clone()), "{}", variant);
        // The same website behind an email address gives the same company key.
        let email = normalize_email(&format!("Info@{}", recase(&host, &mask)));
        prop_assert!(email.is_ok(), "{:?}", email);
        prop_assert_eq!(email_domain(&email.unwrap()), Ok(base));
    }

    /// An IDN typed in Unicode (any case, composed or with a full-width dot) and its punycode
    /// form give the same key, which is ASCII punycode and decodes back to the Unicode host.
    #[test]
    fn idn_and_punycode_share_one_key(host in idn_host(), upper in any::<bool>(), wide_dot in any::<bool>()) {
        let key = normalize_domain(&host);
        prop_assert!(key.is_ok(), "{host:?}: {key:?}");
        let key = key.unwrap();
        prop_assert!(key.as_str().is_ascii(), "{}", key);
        let typed = if upper { host.to_uppercase() } else { host.clone() };
        let typed = if wide_dot { typed.replacen('.', "。", 1) } else { typed };
        prop_assert_eq!(normalize_domain(&typed), Ok(key.clone()), "{}", typed);
        prop_assert_eq!(normalize_domain(key.as_str()), Ok(key.clone()));
        let unicode = key.to_unicode();
        prop_assert_eq!(normalize_domain(&unicode), Ok(key.clone()), "{}", unicode);
        prop_assert_eq!(normalize_domain(&format!("https://www.{unicode}/x")), Ok(key));
    }

    /// Email keys ignore the case of the whole address and surrounding whitespace.
    #[test]
    fn email_case_and_space_do_not_matter(
        local in "[a-z0-9][a-z0-9._+-]{0,15}",
        host in host(),
        mask in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let plain = normalize_email(&format!("{local}@{host}"));
        if let Ok(plain) = plain {
            let variant = format!("  {}  ", recase(&format!("{local}@{host}"), &mask));
            prop_assert_eq!(normalize_email(&variant), Ok(plain));
        }
    }

    /// Any bytes made into text (lossy UTF-8, including replacement characters and controls)
    /// never panic a normalizer, and whatever they accept is a fixed point.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let s = String::from_utf8_lossy(&bytes);
        if let Ok(d) = normalize_domain(&s) {
            prop_assert_eq!(normalize_domain(d.as_str()), Ok(d.clone()));
        }
        if let Ok(e) = normalize_email(&s) {
            prop_assert_eq!(normalize_email(e.as_str()), Ok(e.clone()));
            let _ = email_domain(&e);
        }
        if let Ok(n) = normalize_person_name(&s) {
            prop_assert_eq!(normalize_person_name(n.as_str()), Ok(n.clone()));
        }
        let _ = company_name_exact(&s);
        let _ = company_name_loose(&s);
        let _ = normalize_country(&s);
    }
}

/// A 10 MB field value is rejected (or normalized) quickly, never a panic or a runaway key.
#[test]
fn ten_megabyte_values_are_handled() {
    let big = "a".repeat(10 * 1024 * 1024);
    assert!(normalize_domain(&format!("{big}.com")).is_err());
    assert!(normalize_email(&format!("{big}@acme.com")).is_err());
    assert!(normalize_email(&format!("john@{big}.com")).is_err());
    if let Ok(name) = normalize_person_name(&big) {
        assert!(name.as_str().len() <= big.len());
    }
    let _ = company_name_exact(&big);
    let _ = company_name_loose(&big);
    let _ = normalize_country(&big);
}
