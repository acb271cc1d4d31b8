//! Properties every normalizer must keep on open-ended input: it never panics, it is idempotent,
//! its output has the documented shape, and match keys survive their string encoding.

use std::collections::BTreeMap;

use proptest::prelude::*;
use spoke_match::{
    CompanyFields, ContactFields, MatchKey, company_keys, company_name_exact, company_name_loose,
    contact_keys, normalize_country, normalize_domain, normalize_email, normalize_person_name,
};

/// Characters that exercise the rules: separators, case pairs, accents (composed and combining),
/// IDN dots, full-width forms, invisible characters, scripts without case.
const INTERESTING: &[char] = &[
    '.', '-', '_', '@', ':', '/', '?', '#', '%', '|', '&', '\'', ',', ' ', '\t', '\u{a0}',
    '\u{3000}', 'w', 'W', 'x', 'n', 'X', 'N', '0', '9', 'ß', 'ẞ', 'ü', 'Ü', 'u', '\u{308}', 'ø',
    'Ø', 'å', 'Å', 'İ', 'ı', 'Σ', 'σ', 'ς', '東', '京', '。', '．', 'Ａ', 'ﬁ', '\u{200b}',
    '\u{200d}', '\u{ad}', '\u{feff}', '\u{0}', '\u{7f}', 'ǅ', 'Ω', 'Ω', 'K', '한', '\u{94d}', 'क',
];

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        3 => proptest::sample::select(INTERESTING),
        1 => any::<char>(),
    ]
}

/// Strings built mostly from [`INTERESTING`] and ASCII letters, plus arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(interesting_char(), 0..40)
            .prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => any::<String>(),
    ]
}

/// Inputs shaped like what people type into website fields.
fn website() -> impl Strategy<Value = String> {
    (
        proptest::sample::select(&["", "http://", "HTTPS://", "//", "ftp://", "https://u:p@"][..]),
        proptest::sample::select(&["", "www.", "WWW2.", "www.www.", "ｗｗｗ．"][..]),
        "[a-zA-Z0-9äöüßøå東京-]{1,12}",
        proptest::collection::vec("[a-zA-Z0-9äöüß-]{1,8}", 1..4),
        proptest::sample::select(&["", ".", "。", ":443", ":", "/about?x=1", "#top"][..]),
    )
        .prop_map(|(scheme, www, first, rest, tail)| {
            format!("{scheme}{www}{first}.{}{tail}", rest.join("."))
        })
}

fn email_like() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9.+_ü-]{0,12}",
        proptest::sample::select(&["@", "@@", "", " @"][..]),
        website(),
    )
        .prop_map(|(local, at, domain)| format!("{local}{at}{domain}"))
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![text(), website(), email_like()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn domain_is_idempotent_and_well_formed(input in any_input()) {
        if let Ok(domain) = normalize_domain(&input) {
            let s = domain.as_str();
            prop_assert!(s.is_ascii(), "{s:?}");
            prop_assert_eq!(s, s.to_ascii_lowercase());
            prop_assert!(s.len() <= 253 && s.contains('.') && !s.ends_with('.'), "{s:?}");
            prop_assert!(s.split('.').all(|l| !l.is_empty() && l.len() <= 63), "{s:?}");
            prop_assert_eq!(normalize_domain(s), Ok(domain.clone()));
        }
    }

    #[test]
    fn email_is_idempotent_and_well_formed(input in any_input()) {
        if let Ok(email) = normalize_email(&input) {
            let s = email.as_str();
            prop_assert_eq!(s.matches('@').count(), 1);
            prop_assert!(s.len() <= 254 && email.local_part().len() <= 64, "{s:?}");
            prop_assert_eq!(s, s.to_lowercase());
            prop_assert!(email.domain_part().is_ascii(), "{s:?}");
            prop_assert_eq!(normalize_email(s), Ok(email.clone()));
        }
    }

    #[test]
    fn names_are_idempotent_and_collapsed(input in any_input()) {
        if let Ok(name) = normalize_person_name(&input) {
            let s = name.as_str();
            prop_assert!(!s.starts_with(' ') && !s.ends_with(' ') && !s.contains("  "), "{s:?}");
            prop_assert!(!s.chars().any(|c| c.is_whitespace() && c != ' '), "{s:?}");
            prop_assert_eq!(normalize_person_name(s), Ok(name.clone()));
        }
        if let Ok(name) = company_name_exact(&input) {
            prop_assert_eq!(company_name_exact(name.as_str()), Ok(name.clone()));
        }
        if let Ok(name) = company_name_loose(&input) {
            let s = name.as_str();
            prop_assert!(!s.contains("  ") && !s.contains('&') && !s.contains('.'), "{s:?}");
            prop_assert_eq!(company_name_loose(s), Ok(name.clone()));
        }
    }

    #[test]
    fn country_is_idempotent(input in any_input()) {
        if let Ok(country) = normalize_country(&input) {
            prop_assert_eq!(normalize_country(country.as_str()), Ok(country.clone()));
        }
    }

    #[test]
    fn keys_round_trip_through_their_encoding(
        domain in any_input(),
        website in website(),
        name in text(),
        country in text(),
        email in any_input(),
        first in text(),
        last in text(),
        company in text(),
    ) {
        let company_fields = CompanyFields {
            domain: Some(&domain),
            website: Some(&website),
            name: Some(&name),
            country: Some(&country),
        };
        let contact_fields = ContactFields {
            email: Some(&email),
            first_name: Some(&first),
            last_name: Some(&last),
            company: Some(&company),
        };
        for keys in [company_keys(&company_fields), contact_keys(&contact_fields)] {
            // Every key or a reason: a record never silently has no key.
            prop_assert!(!keys.keys.is_empty() || !keys.rejections.is_empty());
            for key in &keys.keys {
                let encoded = key.encode();
                prop_assert_eq!(encoded.parse::<MatchKey>(), Ok(key.clone()), "{}", encoded);
                let json = serde_json::to_string(key).unwrap();
                prop_assert_eq!(serde_json::from_str::<MatchKey>(&json).unwrap(), key.clone());
            }
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(
        kind in proptest::sample::select(&["domain:", "email:", "name_company:", "company_country:", ""][..]),
        rest in text(),
    ) {
        let _ = format!("{kind}{rest}").parse::<MatchKey>();
    }

    #[test]
    fn field_maps_are_read_without_panicking(pairs in proptest::collection::btree_map(text(), text(), 0..8)) {
        let pairs: BTreeMap<String, String> = pairs;
        let _ = company_keys(&CompanyFields::from_hubspot(&pairs));
        let _ = company_keys(&CompanyFields::from_provider(&pairs));
        let _ = contact_keys(&ContactFields::from_hubspot(&pairs));
        let _ = contact_keys(&ContactFields::from_provider(&pairs));
    }
}
