//! Countries for filtering's company name + country key: common names and codes → ISO 3166-1 alpha-2.
//!
//! # Rules
//!
//! 1. Trim, collapse whitespace, drop invisible characters, upper-case. Empty → [`Rejection::Empty`].
//! 2. Look the value up after loose folding (accents, case and punctuation ignored, `&` = `and`)
//!    in a table of the ~60 countries most present in B2B data: English names, native names, common
//!    short forms and ISO alpha-3 codes. A hit gives the alpha-2 code.
//! 3. No hit → the value from step 1 unchanged. Two-letter ISO codes therefore pass through as
//!    themselves (`fr` → `FR`), and an unknown country still matches the same unknown spelling.
//!
//! | input | result |
//! |---|---|
//! | `US`, `USA`, `U.S.A.`, `United States`, `United States of America`, `America` | `US` |
//! | `UK`, `GB`, `GBR`, `United Kingdom`, `Great Britain`, `England`, `Scotland`, `Wales` | `GB` |
//! | `Deutschland`, `Germany`, `DE`, `DEU` | `DE` |
//! | `Österreich`, `Schweiz`, `Suisse`, `España`, `México`, `Türkiye` | `AT`, `CH`, `CH`, `ES`, `MX`, `TR` |
//! | `日本`, `中国` | `JP`, `CN` |
//! | ` atlantis ` | `ATLANTIS` (unknown: kept) |
//!
//! `UK` is the one two-letter input rewritten: it is not an ISO code but is what people type
//! for the United Kingdom (`GB`). England, Scotland, Wales and Northern Ireland map to `GB`
//! because HubSpot's and providers' country fields use them interchangeably with the UK.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_normalization::{UnicodeNormalization, is_nfc};

use crate::Rejection;
use crate::text::{fold_exact, fold_loose};

/// A normalized country: an ISO 3166-1 alpha-2 code when recognized, else the upper-cased input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Country(String);

impl Country {
    /// The code (`US`) or, for unrecognized input, the upper-cased input.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the value has the shape of an ISO alpha-2 code (from the table or typed as one).
    pub fn is_alpha2(&self) -> bool {
        self.0.len() == 2 && self.0.bytes().all(|b| b.is_ascii_uppercase())
    }

    /// Consumes the value and returns its string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Country {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Country {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<Country> for String {
    fn from(value: Country) -> Self {
        value.0
    }
}

impl TryFrom<String> for Country {
    type Error = Rejection;

    fn try_from(value: String) -> Result<Self, Rejection> {
        normalize_country(&value)
    }
}

/// Normalizes a country name or code (rules in the module docs).
pub fn normalize_country(input: &str) -> Result<Country, Rejection> {
    let exact = fold_exact(input);
    if exact.is_empty() {
        return Err(Rejection::Empty);
    }
    let upper = if exact.is_ascii() {
        exact.to_ascii_uppercase()
    } else {
        // Upper-casing can leave a base letter and a combining mark apart (`ﬁ̈` → `FI` + U+0308),
        // so compose again; otherwise the output would not be a fixed point.
        let upper = exact.to_uppercase();
        if is_nfc(&upper) {
            upper
        } else {
            upper.nfc().collect()
        }
    };
    // Look up the upper-cased form (not the raw input) so that normalizing the output again
    // takes the same path and yields the same value.
    match lookup(&fold_loose(&upper)) {
        Some(code) => Ok(Country(code.to_owned())),
        None => Ok(Country(upper)),
    }
}

/// Table lookup by loosely folded name or code.
fn lookup(key: &str) -> Option<&'static str> {
    Some(match key {
        "us"
        | "usa"
        | "united states"
        | "united states of america"
        | "america"
        | "u s"
        | "u s a"
        | "estados unidos"
        | "etats unis"
        | "vereinigte staaten" => "US",
        "uk"
        | "gb"
        | "gbr"
        | "united kingdom"
        | "great britain"
        | "britain"
        | "england"
        | "scotland"
        | "wales"
        | "northern ireland"
        | "u k"
        | "united kingdom of great britain and northern ireland" => "GB",
        "de" | "deu" | "germany" | "deutschland" | "allemagne" | "alemania" => "DE",
        "fr" | "fra" | "france" | "frankreich" | "francia" => "FR",
        "ca" | "can" | "canada" => "CA",
        "au" | "aus" | "australia" => "AU",
        "nz" | "nzl" | "new zealand" | "aotearoa" => "NZ",
        "ie" | "irl" | "ireland" | "eire" | "republic of ireland" => "IE",
        "in" | "ind" | "india" | "bharat" => "IN",
        "cn"
        | "chn"
        | "china"
        | "people s republic of china"
        | "peoples republic of china"
        | "prc"
        | "中国"
        | "中华人民共和国" => "CN",
        "jp" | "jpn" | "japan" | "nippon" | "日本" => "JP",
        "kr" | "kor" | "south korea" | "korea" | "republic of korea" | "korea republic of"
        | "대한민국" | "한국" => "KR",
        "tw" | "twn" | "taiwan" => "TW",
        "hk" | "hkg" | "hong kong" => "HK",
        "sg" | "sgp" | "singapore" => "SG",
        "my" | "mys" | "malaysia" => "MY",
        "th" | "tha" | "thailand" => "TH",
        "id" | "idn" | "indonesia" => "ID",
        "ph" | "phl" | "philippines" => "PH",
        "vn" | "vnm" | "vietnam" | "viet nam" => "VN",
        "pk" | "pak" | "pakistan" => "PK",
        "bd" | "bgd" | "bangladesh" => "BD",
        "br" | "bra" | "brazil" | "brasil" => "BR",
        "mx" | "mex" | "mexico" => "MX",
        "ar" | "arg" | "argentina" => "AR",
        "cl" | "chl" | "chile" => "CL",
        "co" | "col" | "colombia" => "CO",
        "pe" | "per" | "peru" => "PE",
        "es" | "esp" | "spain" | "espana" => "ES",
        "pt" | "prt" | "portugal" => "PT",
        "it" | "ita" | "italy" | "italia" => "IT",
        "nl" | "nld" | "netherlands" | "the netherlands" | "holland" | "nederland" => "NL",
        "be" | "bel" | "belgium" | "belgique" | "belgie" | "belgien" => "BE",
        "lu" | "lux" | "luxembourg" => "LU",
        "ch" | "che" | "switzerland" | "schweiz" | "suisse" | "svizzera" => "CH",
        "at" | "aut" | "austria" | "osterreich" | "oesterreich" => "AT",
        "se" | "swe" | "sweden" | "sverige" => "SE",
        "no" | "nor" | "norway" | "norge" => "NO",
        "dk" | "dnk" | "denmark" | "danmark" => "DK",
        "fi" | "fin" | "finland" | "suomi" => "FI",
        "is" | "isl" | "iceland" => "IS",
        "ee" | "est" | "estonia" => "EE",
        "lv" | "lva" | "latvia" => "LV",
        "lt" | "ltu" | "lithuania" => "LT",
        "pl" | "pol" | "poland" | "polska" => "PL",
        "cz" | "cze" | "czechia" | "czech republic" | "cesko" => "CZ",
        "sk" | "svk" | "slovakia" => "SK",
        "hu" | "hun" | "hungary" | "magyarorszag" => "HU",
        "ro" | "rou" | "romania" => "RO",
        "bg" | "bgr" | "bulgaria" => "BG",
        "gr" | "grc" | "greece" | "hellas" => "GR",
        "hr" | "hrv" | "croatia" | "hrvatska" => "HR",
        "si" | "svn" | "slovenia" => "SI",
        "rs" | "srb" | "serbia" => "RS",
        "ua" | "ukr" | "ukraine" => "UA",
        "ru" | "rus" | "russia" | "russian federation" | "россия" => "RU",
        "tr" | "tur" | "turkey" | "turkiye" => "TR",
        "il" | "isr" | "israel" => "IL",
        "ae" | "are" | "united arab emirates" | "uae" | "u a e" => "AE",
        "sa" | "sau" | "saudi arabia" | "kingdom of saudi arabia" | "ksa" => "SA",
        "qa" | "qat" | "qatar" => "QA",
        "eg" | "egy" | "egypt" => "EG",
        "za" | "zaf" | "south africa" => "ZA",
        "ng" | "nga" | "nigeria" => "NG",
        "ke" | "ken" | "kenya" => "KE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_common_names_and_codes() {
        let cases = [
            ("US", "US"),
            ("us", "US"),
            ("USA", "US"),
            ("U.S.A.", "US"),
            ("U.S.", "US"),
            ("United States", "US"),
            ("united states of america", "US"),
            ("  United   States ", "US"),
            ("UK", "GB"),
            ("U.K.", "GB"),
            ("GB", "GB"),
            ("GBR", "GB"),
            ("United Kingdom", "GB"),
            ("Great Britain", "GB"),
            ("England", "GB"),
            ("Deutschland", "DE"),
            ("Germany", "DE"),
            ("DE", "DE"),
            ("DEU", "DE"),
            ("Österreich", "AT"),
            ("Schweiz", "CH"),
            ("Suisse", "CH"),
            ("España", "ES"),
            ("México", "MX"),
            ("Türkiye", "TR"),
            ("Czech Republic", "CZ"),
            ("Korea, Republic of", "KR"),
            ("People's Republic of China", "CN"),
            ("日本", "JP"),
            ("中国", "CN"),
            ("Россия", "RU"),
            ("Norge", "NO"),
            ("Danmark", "DK"),
            ("fr", "FR"),
            ("The Netherlands", "NL"),
            ("Viet Nam", "VN"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_country(input).map(Country::into_string),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn unknown_values_are_kept_upper_cased() {
        let cases = [
            (" atlantis ", "ATLANTIS", false),
            ("Middle  Earth", "MIDDLE EARTH", false),
            ("Åland", "ÅLAND", false),
            ("XK", "XK", true),
        ];
        for (input, expected, alpha2) in cases {
            let country = normalize_country(input).unwrap();
            assert_eq!(country.as_str(), expected, "input {input:?}");
            assert_eq!(country.is_alpha2(), alpha2, "input {input:?}");
        }
        assert_eq!(normalize_country(" \t"), Err(Rejection::Empty));
    }

    #[test]
    fn output_is_a_fixed_point_even_when_upper_casing_splits_letters() {
        // Found by the property test: `ﬁ` upper-cases to `FI`, leaving U+0308 to compose with `I`.
        for input in ["ﬁ\u{308}a", "ı\u{308}", "straße", "ǆ"] {
            let once = normalize_country(input).unwrap();
            assert_eq!(
                normalize_country(once.as_str()).unwrap(),
                once,
                "input {input:?}"
            );
        }
        assert_eq!(normalize_country("ﬁ\u{308}a").unwrap().as_str(), "FÏA");
    }

    #[test]
    fn every_table_code_is_a_fixed_point() {
        for code in ["US", "GB", "DE", "CH", "AT", "JP", "CN", "KR", "ZA", "KE"] {
            assert_eq!(normalize_country(code).unwrap().as_str(), code);
        }
    }
}
