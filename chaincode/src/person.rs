//! The 18-digit national ID of the People's Republic of China (GB 11643-1999).
//!
//! Layout: 6-digit administrative region code, 8-digit birth date `YYYYMMDD`, 3-digit sequence
//! (odd for men, even for women), 1 check character (`0`–`9` or `X`) computed by ISO 7064 MOD 11-2.
//! The region is a county-level code of a province, or one of the three whole-province codes of
//! the residence permits of Hong Kong, Macao and Taiwan residents ([`RESIDENCE_PERMIT_REGIONS`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Weights of the 17 leading digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for `sum % 11`.
const CHECK: [u8; 11] = *b"10X98765432";
/// Province-level codes (GB/T 2260) whose county-level codes (the last four digits not all 0)
/// head resident ID numbers, including Taiwan's.
const PROVINCES: [u32; 32] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71,
];
/// The whole-province region codes of the residence permits for Hong Kong (810000), Macao
/// (820000) and Taiwan (830000) residents (港澳台居民居住证, GB 11643 numbers): the only codes
/// of these three issued, exactly as written here.
pub const RESIDENCE_PERMIT_REGIONS: [u32; 3] = [810_000, 820_000, 830_000];

/// Why a string is not a valid national ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonIdError {
    /// Not 18 characters.
    #[error("must be 18 characters, got {0}")]
    WrongLength(usize),
    /// Non-digit among the first 17, or a bad last character.
    #[error("the first 17 characters must be digits and the last a digit or X")]
    BadCharacter,
    /// Unknown province code.
    #[error("region code {0} is not a valid administrative region")]
    BadRegion(String),
    /// The birth date does not exist.
    #[error("birth date {0} is not a valid date")]
    BadBirthDate(String),
    /// The check character is wrong.
    #[error("check character is {got}, expected {expected}")]
    BadChecksum {
        /// Given.
        got: char,
        /// Computed.
        expected: char,
    },
}

/// A validated national ID (the last character upper-case).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PersonId(String);

/// The check character for 17 leading digits.
pub fn check_char(first17: &[u8]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK[(sum % 11) as usize] as char
}

/// Whether `y-m-d` is a real calendar date between 1800 and 2199.
pub fn is_valid_date(y: u32, m: u32, d: u32) -> bool {
    if !(1800..=2199).contains(&y) || !(1..=12).contains(&m) || d == 0 {
        return false;
    }
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d <= days
}

fn digits(s: &[u8]) -> u32 {
    s.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

impl PersonId {
    /// Parses and validates (a lower-case `x` is accepted and normalised).
    pub fn parse(s: &str) -> Result<Self, PersonIdError> {
        let n = s.chars().count();
        if n != 18 || s.len() != 18 {
            return Err(PersonIdError::WrongLength(n));
        }
        let b = s.as_bytes();
        if !b[..17].iter().all(u8::is_ascii_digit) {
            return Err(PersonIdError::BadCharacter);
        }
        let last = b[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') {
            return Err(PersonIdError::BadCharacter);
        }
        let county_level = PROVINCES.contains(&digits(&b[..2])) && digits(&b[2..6]) != 0;
        if !county_level && !RESIDENCE_PERMIT_REGIONS.contains(&digits(&b[..6])) {
            return Err(PersonIdError::BadRegion(s[..6].to_string()));
        }
        let (y, m, d) = (digits(&b[6..10]), digits(&b[10..12]), digits(&b[12..14]));
        if !is_valid_date(y, m, d) || y < 1880 {
            return Err(PersonIdError::BadBirthDate(s[6..14].to_string()));
        }
        let expected = check_char(&b[..17]);
        if last as char != expected {
            return Err(PersonIdError::BadChecksum {
                got: last as char,
                expected,
            });
        }
        let mut out = s[..17].to_string();
        out.push(expected);
        Ok(Self(out))
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Birth date as `YYYY-MM-DD`.
    pub fn birth_date(&self) -> String {
        format!("{}-{}-{}", &self.0[6..10], &self.0[10..12], &self.0[12..14])
    }
}

impl<'de> Deserialize<'de> for PersonId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PersonId::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_standard_example() {
        // GB 11643-1999 appendix example.
        assert_eq!(
            PersonId::parse("11010519491231002X").unwrap().as_str(),
            "11010519491231002X"
        );
        assert_eq!(
            PersonId::parse("11010519491231002x").unwrap().as_str(),
            "11010519491231002X"
        );
        let mut s = "44052418800101001".to_string();
        s.push(check_char(s.as_bytes()));
        assert_eq!(PersonId::parse(&s).unwrap().birth_date(), "1880-01-01");
    }

    #[test]
    fn refuses_a_wrong_checksum() {
        assert_eq!(
            PersonId::parse("110105194912310021"),
            Err(PersonIdError::BadChecksum {
                got: '1',
                expected: 'X'
            })
        );
    }

    #[test]
    fn refuses_wrong_lengths() {
        assert_eq!(
            PersonId::parse("11010519491231002"),
            Err(PersonIdError::WrongLength(17))
        );
        assert_eq!(
            PersonId::parse("11010519491231002X1"),
            Err(PersonIdError::WrongLength(19))
        );
        assert_eq!(
            PersonId::parse("11010519491231002中"),
            Err(PersonIdError::WrongLength(18))
        );
    }

    #[test]
    fn refuses_impossible_birth_dates() {
        for bad in [
            "110105194902300010",
            "110105194913010010",
            "110105190002290010",
        ] {
            let mut s = bad[..17].to_string();
            s.push(check_char(&bad.as_bytes()[..17]));
            assert!(
                matches!(PersonId::parse(&s), Err(PersonIdError::BadBirthDate(_))),
                "{s}"
            );
        }
        // 2000-02-29 exists.
        let mut s = "11010520000229001".to_string();
        s.push(check_char(s.as_bytes()));
        assert!(PersonId::parse(&s).is_ok());
    }

    #[test]
    fn refuses_bad_region_codes() {
        for bad in ["99010519491231002", "00000019491231002", "110000"] {
            if bad.len() != 17 {
                continue;
            }
            let mut s = bad.to_string();
            s.push(check_char(bad.as_bytes()));
            assert!(
                matches!(PersonId::parse(&s), Err(PersonIdError::BadRegion(_))),
                "{s}"
            );
        }
    }

    /// `region` + born 1990-01-01 + sequence `seq`, with its correct check character.
    fn with_check(region: &str, seq: u32) -> String {
        let mut s = format!("{region}19900101{seq:03}");
        s.push(check_char(s.as_bytes()));
        s
    }

    /// Issue 15 finding 9: the residence permits of Hong Kong, Macao and Taiwan residents
    /// (港澳台居民居住证) carry region 810000, 820000 or 830000; they are valid national IDs.
    #[test]
    fn finding_9_accepts_hong_kong_macao_and_taiwan_residence_permits() {
        for region in ["810000", "820000", "830000"] {
            for seq in [1, 2, 999] {
                let id = with_check(region, seq);
                assert_eq!(PersonId::parse(&id).map(|p| p.to_string()), Ok(id.clone()));
            }
        }
        // The check character X is normalised for them too.
        let x = (1..1000)
            .map(|seq| with_check("810000", seq))
            .find(|id| id.ends_with('X'))
            .unwrap();
        let lower = x.to_lowercase();
        assert_eq!(PersonId::parse(&lower).unwrap().as_str(), x);
    }

    /// Finding 9: a permit number with a wrong check character is still refused.
    #[test]
    fn finding_9_refuses_a_residence_permit_with_a_wrong_checksum() {
        for region in ["810000", "820000", "830000"] {
            let good = with_check(region, 7);
            let expected = good.chars().last().unwrap();
            let wrong = if expected == '0' { '1' } else { '0' };
            let bad = format!("{}{wrong}", &good[..17]);
            assert_eq!(
                PersonId::parse(&bad),
                Err(PersonIdError::BadChecksum {
                    got: wrong,
                    expected
                }),
                "{bad}"
            );
        }
    }

    /// Finding 9: only the three whole-province codes are issued — not a city or district
    /// code under them, not a neighbouring province code.
    #[test]
    fn finding_9_refuses_the_codes_next_to_the_residence_permit_regions() {
        for region in [
            "810100", "810001", "811000", "819999", "820100", "820001", "830100", "830001",
            "840000", "800000", "850000", "900000", "910000", "880000",
        ] {
            let id = with_check(region, 7);
            assert_eq!(
                PersonId::parse(&id),
                Err(PersonIdError::BadRegion(region.to_string())),
                "{id}"
            );
        }
        // Mainland codes are unchanged: a real district passes, a whole-province code does not.
        assert!(PersonId::parse(&with_check("110105", 7)).is_ok());
        assert!(PersonId::parse(&with_check("110000", 7)).is_err());
    }

    #[test]
    fn refuses_letters_inside() {
        assert_eq!(
            PersonId::parse("1101051949123100AX"),
            Err(PersonIdError::BadCharacter)
        );
        assert_eq!(
            PersonId::parse("11010519491231002Y"),
            Err(PersonIdError::BadCharacter)
        );
    }
}
