//! Text folding shared by the name and country rules (internal).
//!
//! Two strengths:
//! - [`fold_exact`]: trim, collapse whitespace, drop invisible characters, lower-case, NFC. Keeps
//!   every visible character, so two values are equal only if a person would call them the same
//!   spelling.
//! - [`fold_loose`]: additionally compatibility-folds (NFKC), removes accents and punctuation,
//!   spells out `&`. Used where the two sides come from different systems and are typed
//!   differently (provider profile vs HubSpot record).

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::is_nfc;

/// Characters that are invisible in a name and only arrive through copy-paste or CSV exports:
/// C0/C1 controls (other than whitespace), soft hyphen, zero-width space, word joiner, BOM.
/// ZWJ/ZWNJ (U+200D/U+200C) are kept: they change the spelling of Indic and Persian names.
fn is_invisible(c: char) -> bool {
    (c.is_control() && !c.is_whitespace())
        || matches!(c, '\u{ad}' | '\u{200b}' | '\u{2060}' | '\u{feff}')
}

/// Pushes `c` unless it is whitespace, in which case a single space is inserted before the next
/// visible character (so runs collapse and the ends are trimmed).
struct Collapser {
    out: String,
    pending_space: bool,
}

impl Collapser {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            pending_space: false,
        }
    }

    fn space(&mut self) {
        self.pending_space = !self.out.is_empty();
    }

    fn push(&mut self, c: char) {
        if self.pending_space {
            self.out.push(' ');
            self.pending_space = false;
        }
        self.out.push(c);
    }

    fn push_str(&mut self, s: &str) {
        for c in s.chars() {
            self.push(c);
        }
    }
}

/// Exact folding: trim, collapse whitespace runs to one space, drop invisible characters,
/// lower-case (`char::to_lowercase`, with final sigma `ς` folded to `σ`), Unicode NFC.
pub(crate) fn fold_exact(input: &str) -> String {
    let mut out = Collapser::with_capacity(input.len());
    if input.is_ascii() {
        for b in input.bytes() {
            let c = char::from(b);
            if c.is_ascii_whitespace() {
                out.space();
            } else if !c.is_ascii_control() {
                out.push(c.to_ascii_lowercase());
            }
        }
        return out.out;
    }
    for c in input.chars() {
        if c.is_whitespace() {
            out.space();
        } else if !is_invisible(c) {
            for lower in c.to_lowercase() {
                // Greek final sigma is a positional spelling of σ, not a different letter.
                out.push(if lower == 'ς' { 'σ' } else { lower });
            }
        }
    }
    let folded = out.out;
    if is_nfc(&folded) {
        folded
    } else {
        folded.nfc().collect()
    }
}

/// Letters without a canonical decomposition that still have a plain Latin spelling.
fn spell_out(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'ø' => "o",
        'æ' => "ae",
        'œ' => "oe",
        'đ' | 'ð' => "d",
        'þ' => "th",
        'ł' => "l",
        'ı' => "i",
        'ħ' => "h",
        'ŧ' => "t",
        'ς' => "σ",
        _ => return None,
    })
}

/// Punctuation that joins its neighbours when removed (`A.B.C.` → `abc`, `McDonald's` → `mcdonalds`);
/// all other non-alphanumeric characters separate words.
fn is_joining_punctuation(c: char) -> bool {
    matches!(c, '.' | '\'' | '’' | '‘' | '´' | '`' | 'ʼ')
}

/// Loose folding: NFKC compatibility folding, lower-case, accents removed (combining diacritical
/// marks U+0300–U+036F after decomposition), `ß`→`ss`, `ø`→`o`, `æ`→`ae`, ..., `&` → ` and `,
/// `.` and apostrophes removed, every other non-alphanumeric character a word break; words joined
/// by single spaces.
pub(crate) fn fold_loose(input: &str) -> String {
    let mut out = Collapser::with_capacity(input.len());
    if input.is_ascii() {
        for b in input.bytes() {
            let c = char::from(b);
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_lowercase());
            } else if c == '&' {
                out.space();
                out.push_str("and");
                out.space();
            } else if !is_joining_punctuation(c) && !c.is_ascii_control() {
                out.space();
            }
        }
        return out.out;
    }
    // NFKD = the decomposition half of NFKC; accents become separate marks we can drop.
    for c in input.nfkd() {
        if ('\u{300}'..='\u{36f}').contains(&c) || is_invisible(c) || is_joining_punctuation(c) {
            continue;
        }
        if c == '&' {
            out.space();
            out.push_str("and");
            out.space();
            continue;
        }
        if !(c.is_alphanumeric() || is_other_mark(c)) {
            out.space();
            continue;
        }
        for lower in c.to_lowercase() {
            match spell_out(lower) {
                Some(spelled) => out.push_str(spelled),
                None => out.push(lower),
            }
        }
    }
    // Recompose what the decomposition split (Hangul syllables, Indic vowel signs) for readable keys.
    out.out.nfc().collect()
}

/// Marks outside the Latin diacritics block belong to the letter before them (Devanagari vowel
/// signs, Hebrew points, ...) and are kept, not treated as word breaks.
fn is_other_mark(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_folding() {
        let cases = [
            ("  John  ", "john"),
            ("Mary\tAnn\n Smith", "mary ann smith"),
            ("O'Brien", "o'brien"),
            ("\u{feff}Zoë", "zoë"),
            ("Zo\u{eb}", "zoë"),
            ("Zoe\u{308}", "zoë"),
            ("ÅSE", "åse"),
            ("Ørsted", "ørsted"),
            ("STRAUSS", "strauss"),
            ("Strauß", "strauß"),
            ("STRAUẞ", "strauß"),
            ("ΟΔΥΣΣΕΎΣ", "οδυσσεύσ"),
            ("Οδυσσεύς", "οδυσσεύσ"),
            ("東京\u{3000}太郎", "東京 太郎"),
            ("a\u{200b}b\u{ad}c", "abc"),
            ("\u{1}x\u{7f}", "x"),
            ("", ""),
            (" \t ", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(fold_exact(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn loose_folding() {
        let cases = [
            ("Procter & Gamble", "procter and gamble"),
            ("AT&T", "at and t"),
            ("A.B.C. Corp.", "abc corp"),
            ("McDonald's", "mcdonalds"),
            ("McDonald’s", "mcdonalds"),
            ("Hewlett-Packard", "hewlett packard"),
            ("Nestlé S.A.", "nestle sa"),
            ("Zürich Versicherung", "zurich versicherung"),
            ("Ålesund", "alesund"),
            ("Ørsted A/S", "orsted a s"),
            ("Straße", "strasse"),
            ("ＡＣＭＥ　ｃｏｒｐ", "acme corp"),
            ("ﬁne", "fine"),
            ("東京電力", "東京電力"),
            ("삼성전자", "삼성전자"),
            ("हिन्दी", "हिन्दी"),
            ("Łódź", "lodz"),
        ];
        for (input, expected) in cases {
            assert_eq!(fold_loose(input), expected, "input {input:?}");
        }
    }
}
