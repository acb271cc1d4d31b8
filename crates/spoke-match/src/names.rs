//! Person and company names: the second contact key (first + last + exact company) and, loosely,
//! the second company key of filtering (name + country).
//!
//! # Person names — [`normalize_person_name`]
//!
//! The guide's contact rule 2 compares first and last name case-insensitively. Rules:
//! trim; collapse every run of Unicode whitespace (incl. NBSP, ideographic space, tabs, newlines)
//! to one space; drop invisible characters (controls, soft hyphen U+00AD, zero-width space U+200B,
//! word joiner U+2060, BOM U+FEFF); lower-case with `char::to_lowercase` and fold Greek final sigma
//! `ς` to `σ`; Unicode NFC (so `Zoe` + U+0308 equals `Zoë`). Empty → [`Rejection::Empty`].
//!
//! | input | key |
//! |---|---|
//! | `  Mary   Ann ` | `mary ann` |
//! | `ZOË` / `Zoe\u{308}` | `zoë` |
//! | `Ørsted` | `ørsted` |
//! | `ÅSE` | `åse` |
//! | `東京　太郎` | `東京 太郎` |
//! | `O'Brien` | `o'brien` (punctuation is part of a name) |
//!
//! **Not** applied, on purpose: accent removal (`Zoë` ≠ `Zoe`), punctuation removal, nickname
//! mapping, and full Unicode case folding of `ß`: `Weiß` and `WEISS` stay different
//! (`weiß` vs `weiss`) because they are different registered surnames, and an exact rule that
//! wrongly merges two people updates the wrong HubSpot contact — worse than flagging one duplicate.
//! The capital sharp s `ẞ` lower-cases to `ß`, so `WEIẞ` equals `Weiß`.
//!
//! # Exact company name — [`company_name_exact`]
//!
//! The guide says "Exact Company Name". We read *exact* as "the same characters", not "the same
//! bytes": the **same rules as person names** (trim, whitespace collapse, invisible characters
//! dropped, case-insensitive, NFC). Why case-insensitive: HubSpot's own search compares string
//! properties case-insensitively, so a case-sensitive rule would disagree with the candidates
//! HubSpot returns, and `ACME Inc` vs `Acme Inc` is the same company typed by two people. What
//! stays significant: legal suffixes (`Acme` ≠ `Acme Inc`), punctuation (`Acme, Inc.` ≠
//! `Acme Inc`), accents and `&` vs `and` — that is what makes it *exact* rather than fuzzy.
//!
//! # Loose company name — [`company_name_loose`]
//!
//! For filtering's name + country match, where provider and HubSpot spell the same company
//! differently. Rules, in order:
//! 1. NFKC compatibility folding (full-width `ＡＣＭＥ` → `acme`, ligature `ﬁ` → `fi`), lower-case.
//! 2. Accents removed (`Nestlé` → `nestle`, `Zürich` → `zurich`, `Ålesund` → `alesund`) and
//!    letters without decomposition spelled out: `ß`→`ss`, `ø`→`o`, `æ`→`ae`, `œ`→`oe`,
//!    `đ`/`ð`→`d`, `þ`→`th`, `ł`→`l`, `ı`→`i`. So `Straße` = `Strasse`, `Ørsted` = `Orsted`.
//! 3. `&` → `and`; `.` and apostrophes removed (`A.B.C.` → `abc`, `McDonald's` → `mcdonalds`);
//!    every other non-alphanumeric character separates words (`Hewlett-Packard` → `hewlett packard`).
//! 4. A leading `the` is removed (`The Home Depot` → `home depot`).
//! 5. Trailing legal-form suffixes are removed repeatedly (`Acme Holdings Co., Ltd.` →
//!    `acme holdings`), then a dangling `and` (`Johnson & Co` → `johnson`). See [`LEGAL_SUFFIXES`].
//! 6. Steps 4–5 never remove the last remaining word: `The Co` → `co`, `Inc` → `inc`.
//!
//! Empty after folding (e.g. only punctuation) → [`Rejection::Empty`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Rejection;
use crate::text::{fold_exact, fold_loose};

macro_rules! folded_string {
    ($(#[$doc:meta])* $name:ident, $normalize:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The normalized text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the value and returns its string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Rejection;

            fn try_from(value: String) -> Result<Self, Rejection> {
                $normalize(&value)
            }
        }
    };
}

folded_string!(
    /// A first or last name normalized for case-insensitive comparison.
    PersonName,
    normalize_person_name
);
folded_string!(
    /// A company name normalized for the guide's "exact company name" rule.
    CompanyName,
    company_name_exact
);
folded_string!(
    /// A company name with legal suffixes, accents and punctuation folded away.
    LooseCompanyName,
    company_name_loose
);

/// Legal-form suffixes removed by [`company_name_loose`], as word sequences after loose folding
/// (so `S.A.` is `sa` and `A/S` is `a s`). Longest sequences are tried first.
pub const LEGAL_SUFFIXES: &[&[&str]] = &[
    &["s", "a", "de", "c", "v"],
    &["sab", "de", "cv"],
    &["sa", "de", "cv"],
    &["sp", "z", "o", "o"],
    &["sp", "z", "oo"],
    &["s", "p", "a"],
    &["s", "r", "l"],
    &["s", "a", "s"],
    &["s", "a"],
    &["s", "l"],
    &["a", "s"],
    &["a", "g"],
    &["b", "v"],
    &["n", "v"],
    &["inc"],
    &["incorporated"],
    &["llc"],
    &["llp"],
    &["lp"],
    &["pllc"],
    &["ltd"],
    &["limited"],
    &["corp"],
    &["corporation"],
    &["co"],
    &["company"],
    &["plc"],
    &["gmbh"],
    &["mbh"],
    &["ag"],
    &["kg"],
    &["kgaa"],
    &["ohg"],
    &["ug"],
    &["se"],
    &["sa"],
    &["sas"],
    &["sarl"],
    &["srl"],
    &["spa"],
    &["sl"],
    &["bv"],
    &["nv"],
    &["oy"],
    &["oyj"],
    &["ab"],
    &["as"],
    &["asa"],
    &["aps"],
    &["pty"],
    &["pte"],
    &["pvt"],
    &["kk"],
    &["lda"],
    &["ltda"],
    &["sro"],
    &["kft"],
    &["zrt"],
    &["ulc"],
];

/// Normalizes a first or last name (rules in the module docs).
pub fn normalize_person_name(input: &str) -> Result<PersonName, Rejection> {
    non_empty(fold_exact(input)).map(PersonName)
}

/// Normalizes a company name for the exact rule (same rules as person names; see module docs).
pub fn company_name_exact(input: &str) -> Result<CompanyName, Rejection> {
    non_empty(fold_exact(input)).map(CompanyName)
}

/// Normalizes a company name for the loose rule of filtering (see module docs).
pub fn company_name_loose(input: &str) -> Result<LooseCompanyName, Rejection> {
    let folded = fold_loose(input);
    let mut words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() > 1 && words[0] == "the" {
        words.remove(0);
    }
    let mut stripped_suffix = false;
    'strip: while words.len() > 1 {
        for suffix in LEGAL_SUFFIXES {
            if suffix.len() < words.len() && words.ends_with(suffix) {
                words.truncate(words.len() - suffix.len());
                stripped_suffix = true;
                continue 'strip;
            }
        }
        if stripped_suffix && words.last() == Some(&"and") {
            words.pop();
            continue;
        }
        break;
    }
    non_empty(words.join(" ")).map(LooseCompanyName)
}

fn non_empty(s: String) -> Result<String, Rejection> {
    if s.is_empty() {
        Err(Rejection::Empty)
    } else {
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_names() {
        let cases = [
            ("John", "john"),
            ("  Mary   Ann ", "mary ann"),
            ("JOHN", "john"),
            ("ZOË", "zoë"),
            ("Zoe\u{308}", "zoë"),
            ("Ørsted", "ørsted"),
            ("ÅSE", "åse"),
            ("Zürich", "zürich"),
            ("東京\u{3000}太郎", "東京 太郎"),
            ("O'Brien", "o'brien"),
            ("Weiß", "weiß"),
            ("WEISS", "weiss"),
            ("WEIẞ", "weiß"),
            ("Jean-Luc", "jean-luc"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_person_name(input).map(PersonName::into_string),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
        assert_eq!(normalize_person_name(" \u{feff} "), Err(Rejection::Empty));
    }

    #[test]
    fn exact_company_names_are_case_and_space_insensitive_only() {
        let same = [
            ("Acme Inc", "ACME  inc "),
            ("Zürich Versicherung", "ZÜRICH versicherung"),
            ("Ørsted A/S", "ØRSTED a/s"),
        ];
        for (a, b) in same {
            assert_eq!(
                company_name_exact(a),
                company_name_exact(b),
                "{a:?} vs {b:?}"
            );
        }
        let different = [
            ("Acme", "Acme Inc"),
            ("Acme, Inc.", "Acme Inc"),
            ("Nestlé", "Nestle"),
            ("Procter & Gamble", "Procter and Gamble"),
            ("Straße AG", "Strasse AG"),
        ];
        for (a, b) in different {
            assert_ne!(
                company_name_exact(a),
                company_name_exact(b),
                "{a:?} vs {b:?}"
            );
        }
        assert_eq!(company_name_exact("\t"), Err(Rejection::Empty));
    }

    #[test]
    fn loose_company_names() {
        let cases = [
            ("Acme Inc", "acme"),
            ("Acme, Inc.", "acme"),
            ("ACME Incorporated", "acme"),
            ("Acme LLC", "acme"),
            ("Acme Holdings Co., Ltd.", "acme holdings"),
            ("Acme GmbH & Co. KG", "acme"),
            ("Siemens AG", "siemens"),
            ("Nestlé S.A.", "nestle"),
            ("Nestle S. A.", "nestle"),
            ("Ørsted A/S", "orsted"),
            ("Orsted", "orsted"),
            ("Procter & Gamble Co", "procter and gamble"),
            ("Johnson & Co", "johnson"),
            ("The Home Depot, Inc.", "home depot"),
            ("The Co", "co"),
            ("Inc", "inc"),
            ("Hewlett-Packard Company", "hewlett packard"),
            (
                "Zürich Versicherungs-Gesellschaft AG",
                "zurich versicherungs gesellschaft",
            ),
            ("Straße GmbH", "strasse"),
            ("Ålesund Shipping AS", "alesund shipping"),
            ("東京電力", "東京電力"),
            ("Toyota Motor Corporation", "toyota motor"),
            ("Banco Santander, S.A.", "banco santander"),
            ("Grupo Bimbo, S.A.B. de C.V.", "grupo bimbo"),
            ("Grupo Bimbo S.A. de C.V.", "grupo bimbo"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                company_name_loose(input).map(LooseCompanyName::into_string),
                Ok(expected.to_owned()),
                "input {input:?}"
            );
        }
        assert_eq!(company_name_loose("..."), Err(Rejection::Empty));
    }
}
