//! The n-grams of the fuzzy-search index (R-QRY-1).
//!
//! A value is normalized (whitespace removed, lower-cased) and cut into:
//! - every character bigram that touches a non-ASCII character: Chinese names and addresses
//!   (`张伟明` → `张伟`, `伟明`; `3号` → `3号`);
//! - every 4-gram inside a run of ASCII letters and digits: national IDs, phone numbers, plate
//!   numbers. Digit bigrams would be useless as an index (100 distinct values, each shared by a
//!   large part of the population); 4-grams have 10,000 digit values.
//!
//! The rule guarantees what search relies on: if a query is a substring of a value (both
//! normalized), every gram of the query is a gram of the value. A query with no grams (one
//! Chinese character, fewer than four letters or digits in a row) cannot use the index and is
//! refused by the API.

use std::collections::BTreeSet;

/// Length of the grams cut from runs of ASCII letters and digits.
pub const ASCII_GRAM_CHARS: usize = 4;

/// The value as the index and search see it: no whitespace, lower case.
pub fn normalize(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The grams of `value` (see the module documentation).
pub fn ngrams(value: &str) -> BTreeSet<String> {
    let chars: Vec<char> = normalize(value).chars().collect();
    let mut out = BTreeSet::new();
    for w in chars.windows(2) {
        if !w[0].is_ascii() || !w[1].is_ascii() {
            out.insert(w.iter().collect());
        }
    }
    for run in chars.split(|c| !c.is_ascii_alphanumeric()) {
        for w in run.windows(ASCII_GRAM_CHARS) {
            out.insert(w.iter().collect());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grams(v: &str) -> Vec<String> {
        ngrams(v).into_iter().collect()
    }

    #[test]
    fn chinese_text_gives_bigrams_and_ascii_runs_give_4_grams() {
        assert_eq!(grams("张 伟明"), ["伟明", "张伟"]);
        assert_eq!(grams("35010219900101"), {
            let s = "35010219900101";
            let mut v: Vec<String> = (0..=s.len() - 4).map(|i| s[i..i + 4].into()).collect();
            v.sort();
            v.dedup();
            v
        });
        assert_eq!(grams("12号楼"), ["2号", "号楼"]);
        assert_eq!(grams("AbCd"), ["abcd"]);
        assert!(grams("王").is_empty(), "one character has no gram");
        assert!(grams("abc").is_empty(), "three letters have no gram");
        assert!(grams("  ").is_empty());
    }

    fn text() -> impl Strategy<Value = String> {
        // Chinese, digits, letters, separators and spaces, mixed.
        proptest::collection::vec(
            prop_oneof![
                Just('张'),
                Just('伟'),
                Just('路'),
                Just('号'),
                Just('1'),
                Just('2'),
                Just('x'),
                Just('X'),
                Just('-'),
                Just(' '),
            ],
            0..24,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        /// Search soundness: a substring's grams are a subset of the value's grams.
        #[test]
        fn a_substrings_grams_are_grams_of_the_value(v in text(), a in 0usize..24, len in 0usize..24) {
            let n: Vec<char> = normalize(&v).chars().collect();
            let a = a.min(n.len());
            let b = (a + len).min(n.len());
            let q: String = n[a..b].iter().collect();
            let all = ngrams(&v);
            for g in ngrams(&q) {
                prop_assert!(all.contains(&g), "{g:?} of {q:?} missing from grams of {v:?}");
            }
        }
    }
}
