//! Validated identifiers. The only way to get one is through `parse`, so code past the edge never
//! re-checks a string (parse, don't validate).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused. The message says which rule failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} characters, got {got}")]
    Length { expected: &'static str, got: usize },
    #[error("character {position} (`{found}`) is not allowed here: expected {expected}")]
    Character {
        position: usize,
        found: char,
        expected: &'static str,
    },
    #[error("birth date `{0}` is not a real date")]
    BirthDate(String),
    #[error("check character is `{found}`, expected `{expected}`")]
    Check { found: char, expected: char },
    #[error("organisation code check character is `{found}`, expected `{expected}`")]
    OrgCheck { found: char, expected: char },
    #[error("a mobile number is 11 digits starting with 13-19 (after +86/0086)")]
    Phone,
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
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

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// 居民身份证号码 (GB 11643-1999): 17 digits and a MOD 11-2 check character, a real birth date at
/// positions 7–14. A lowercase `x` is normalised to `X`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdNumber(String);
string_newtype!(IdNumber);

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

impl IdNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != 18 {
            return Err(IdError::Length {
                expected: "18",
                got: chars.len(),
            });
        }
        let mut sum = 0u32;
        for (i, c) in chars[..17].iter().enumerate() {
            let d = c.to_digit(10).ok_or(IdError::Character {
                position: i + 1,
                found: *c,
                expected: "a digit",
            })?;
            sum += d * ID_WEIGHTS[i];
        }
        let last = chars[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(IdError::Character {
                position: 18,
                found: chars[17],
                expected: "a digit or `X`",
            });
        }
        let birth: String = chars[6..14].iter().collect();
        if !is_real_date(&birth) {
            return Err(IdError::BirthDate(birth));
        }
        let expected = ID_CHECK[(sum % 11) as usize];
        if last != expected {
            return Err(IdError::Check {
                found: chars[17],
                expected,
            });
        }
        let mut normalised: String = chars[..17].iter().collect();
        normalised.push(last);
        Ok(IdNumber(normalised))
    }

    /// The last six characters: the initial password of a migrated user.
    pub fn last_six(&self) -> &str {
        &self.0[12..]
    }

    /// `1401**********1238`: enough to recognise, not enough to use. For logs and notices.
    pub fn masked(&self) -> String {
        format!("{}**********{}", &self.0[..4], &self.0[14..])
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Full ID numbers never reach logs through Debug.
        write!(f, "IdNumber({})", self.masked())
    }
}

fn is_real_date(yyyymmdd: &str) -> bool {
    let Ok(y) = yyyymmdd[0..4].parse::<i32>() else {
        return false;
    };
    let Ok(m) = yyyymmdd[4..6].parse::<u8>() else {
        return false;
    };
    let Ok(d) = yyyymmdd[6..8].parse::<u8>() else {
        return false;
    };
    if !(1800..=2100).contains(&y) {
        return false;
    }
    let Ok(month) = time::Month::try_from(m) else {
        return false;
    };
    time::Date::from_calendar_date(y, month, d).is_ok()
}

/// 纳税人识别号: an 18-character unified social credit code (GB 32100-2015, both check
/// characters verified), or a legacy 15-, 17- or 20-character taxpayer id checked by format only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaxpayerId(String);
string_newtype!(TaxpayerId);

const USCC_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: char) -> Option<u32> {
    USCC_ALPHABET.find(c).map(|i| i as u32)
}

impl TaxpayerId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim().to_ascii_uppercase();
        let chars: Vec<char> = s.chars().collect();
        match chars.len() {
            18 => Self::parse_uscc(&chars).map(|()| TaxpayerId(s)),
            15 | 17 | 20 => {
                if let Some((i, c)) = chars
                    .iter()
                    .enumerate()
                    .find(|(_, c)| !c.is_ascii_alphanumeric())
                {
                    return Err(IdError::Character {
                        position: i + 1,
                        found: *c,
                        expected: "a letter or a digit",
                    });
                }
                Ok(TaxpayerId(s))
            }
            n => Err(IdError::Length {
                expected: "18 (or a legacy 15, 17 or 20)",
                got: n,
            }),
        }
    }

    fn parse_uscc(chars: &[char]) -> Result<(), IdError> {
        let mut values = [0u32; 18];
        for (i, c) in chars.iter().enumerate() {
            values[i] = uscc_value(*c).ok_or(IdError::Character {
                position: i + 1,
                found: *c,
                expected: "a digit or a capital letter other than I, O, S, V, Z",
            })?;
        }
        // Characters 9–17: the organisation code (GB 11714), whose 9th character is its own check.
        let org = &chars[8..17];
        let mut org_sum = 0u32;
        for (i, c) in org[..8].iter().enumerate() {
            let v = match c {
                '0'..='9' => *c as u32 - '0' as u32,
                'A'..='Z' => *c as u32 - 'A' as u32 + 10,
                _ => {
                    return Err(IdError::Character {
                        position: 9 + i,
                        found: *c,
                        expected: "a digit or a capital letter",
                    });
                }
            };
            org_sum += v * ORG_WEIGHTS[i];
        }
        let org_check = match 11 - org_sum % 11 {
            10 => 'X',
            11 => '0',
            n => char::from_digit(n, 10).unwrap_or('0'),
        };
        if org[8] != org_check {
            return Err(IdError::OrgCheck {
                found: org[8],
                expected: org_check,
            });
        }
        let sum: u32 = values[..17]
            .iter()
            .zip(USCC_WEIGHTS)
            .map(|(v, w)| v * w)
            .sum();
        let check_value = (31 - sum % 31) % 31;
        let expected = USCC_ALPHABET
            .chars()
            .nth(check_value as usize)
            .unwrap_or('0');
        if chars[17] != expected {
            return Err(IdError::Check {
                found: chars[17],
                expected,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for TaxpayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaxpayerId({})", self.0)
    }
}

/// A mainland mobile number: `1[3-9]` + 9 digits, after removing `+86` / `0086` and separators.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);
string_newtype!(Phone);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let compact: String = s
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        let digits = compact
            .strip_prefix("+86")
            .or_else(|| compact.strip_prefix("0086"))
            .unwrap_or(&compact);
        let bytes = digits.as_bytes();
        let ok = bytes.len() == 11
            && bytes.iter().all(u8::is_ascii_digit)
            && bytes[0] == b'1'
            && (b'3'..=b'9').contains(&bytes[1]);
        if ok {
            Ok(Phone(digits.to_string()))
        } else {
            Err(IdError::Phone)
        }
    }

    /// `138****8000`, as the tax bureau's notices show numbers.
    pub fn masked(&self) -> String {
        format!("{}****{}", &self.0[..3], &self.0[7..])
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_id_numbers() {
        assert!(IdNumber::parse("11010519491231002X").is_ok());
        assert!(IdNumber::parse("11010519491231002x").is_ok());
        assert!(IdNumber::parse("140105199001011238").is_ok());
        assert!(matches!(
            IdNumber::parse("140105199001011237"),
            Err(IdError::Check { .. })
        ));
        assert!(matches!(
            IdNumber::parse("140105199002301238"),
            Err(IdError::BirthDate(_))
        ));
    }

    #[test]
    fn known_credit_codes() {
        for ok in [
            "91350200776049653A",
            "91440101MA5CJQ4N59",
            "91140100MA0K123488",
        ] {
            assert!(TaxpayerId::parse(ok).is_ok(), "{ok}");
        }
        assert!(TaxpayerId::parse("91140100MA0K123487").is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(
            Phone::parse("+86 138-0013-8000").map(|p| p.to_string()),
            Ok("13800138000".into())
        );
        assert!(Phone::parse("12800138000").is_err());
        assert_eq!(
            Phone::parse("13800138000").map(|p| p.masked()),
            Ok("138****8000".into())
        );
    }

    #[test]
    fn every_error_names_its_rule() {
        let msg = |r: Result<IdNumber, IdError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(IdNumber::parse("1401051990")).contains("expected 18 characters"));
        assert!(msg(IdNumber::parse("14010519900101123A")).contains("character 18"));
        assert!(msg(IdNumber::parse("1401051990010A1238")).contains("character 14"));
        assert!(msg(IdNumber::parse("140105199013011238")).contains("birth date"));
        assert!(msg(IdNumber::parse("140105199001011237")).contains("check character"));
        let tmsg =
            |r: Result<TaxpayerId, IdError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(tmsg(TaxpayerId::parse("91140100MA0K1234")).contains("legacy"));
        assert!(tmsg(TaxpayerId::parse("91140100MA0K1234I8")).contains("character 17"));
        assert!(tmsg(TaxpayerId::parse("91140100MA0K123487")).contains("check character"));
        assert!(tmsg(TaxpayerId::parse("91140100MA0K124488")).contains("organisation code"));
        assert!(tmsg(TaxpayerId::parse("1234567890123-5")).contains("letter or a digit"));
        assert!(
            Phone::parse("1380013800")
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
                .contains("11 digits")
        );
        // Debug never shows a full ID number.
        let id = IdNumber::parse("140105199001011238").unwrap();
        assert!(!format!("{id:?}").contains("140105199001011238"));
        assert_eq!(id.last_six(), "011238");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A valid ID number built from a region, a real date and a sequence number.
        fn id_number() -> impl Strategy<Value = String> {
            (
                100_000u32..=659_999,
                1900i32..=2020,
                1u8..=12,
                1u8..=28,
                0u32..=999,
            )
                .prop_map(|(region, y, m, d, seq)| {
                    let body = format!("{region:06}{y:04}{m:02}{d:02}{seq:03}");
                    let sum: u32 = body
                        .chars()
                        .zip(ID_WEIGHTS)
                        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
                        .sum();
                    format!("{body}{}", ID_CHECK[(sum % 11) as usize])
                })
        }

        /// A valid unified social credit code with both check characters computed.
        fn credit_code() -> impl Strategy<Value = String> {
            let alpha: Vec<char> = USCC_ALPHABET.chars().collect();
            let digits_upper: Vec<char> = "0123456789ABCDEFGHJKLMNPQRTUWXY".chars().collect();
            (
                proptest::sample::select(vec!['1', '5', '9', 'Y']),
                proptest::sample::select(vec!['1', '2', '3']),
                100_000u32..=659_999,
                proptest::collection::vec(proptest::sample::select(digits_upper), 8),
            )
                .prop_map(move |(dept, kind, region, org)| {
                    let org: String = org.into_iter().collect();
                    let org_sum: u32 = org
                        .chars()
                        .zip(ORG_WEIGHTS)
                        .map(|(c, w)| {
                            let v = c.to_digit(10).unwrap_or_else(|| c as u32 - 'A' as u32 + 10);
                            v * w
                        })
                        .sum();
                    let org_check = match 11 - org_sum % 11 {
                        10 => 'X',
                        11 => '0',
                        n => char::from_digit(n, 10).unwrap_or('0'),
                    };
                    let body = format!("{dept}{kind}{region:06}{org}{org_check}");
                    let sum: u32 = body
                        .chars()
                        .zip(USCC_WEIGHTS)
                        .map(|(c, w)| uscc_value(c).unwrap_or(0) * w)
                        .sum();
                    format!("{body}{}", alpha[((31 - sum % 31) % 31) as usize])
                })
        }

        fn mutate(s: &str, pos: usize, c: char) -> Option<String> {
            let mut chars: Vec<char> = s.chars().collect();
            if chars[pos].eq_ignore_ascii_case(&c) {
                return None;
            }
            chars[pos] = c;
            Some(chars.into_iter().collect())
        }

        proptest! {
            #[test]
            fn generated_id_numbers_are_accepted(s in id_number()) {
                prop_assert_eq!(IdNumber::parse(&s).map(|i| i.to_string()), Ok(s.clone()));
            }

            #[test]
            fn any_single_change_to_an_id_number_is_rejected(
                s in id_number(),
                pos in 0usize..18,
                c in proptest::sample::select("0123456789Xa".chars().collect::<Vec<_>>()),
            ) {
                if let Some(m) = mutate(&s, pos, c) {
                    prop_assert!(IdNumber::parse(&m).is_err(), "{} accepted", m);
                }
            }

            #[test]
            fn generated_credit_codes_are_accepted(s in credit_code()) {
                prop_assert_eq!(TaxpayerId::parse(&s).map(|i| i.to_string()), Ok(s.clone()));
            }

            #[test]
            fn any_single_change_to_a_credit_code_is_rejected(
                s in credit_code(),
                pos in 0usize..18,
                c in proptest::sample::select(
                    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-".chars().collect::<Vec<_>>()),
            ) {
                if let Some(m) = mutate(&s, pos, c) {
                    prop_assert!(TaxpayerId::parse(&m).is_err(), "{} accepted", m);
                }
            }

            #[test]
            fn phones_roundtrip(rest in 0u64..1_000_000_000, second in 3u8..=9) {
                let s = format!("1{second}{rest:09}");
                prop_assert_eq!(Phone::parse(&format!("+86{s}")).map(|p| p.to_string()), Ok(s.clone()));
                prop_assert_eq!(Phone::parse(&format!("0086 {s}")).map(|p| p.to_string()), Ok(s));
            }
        }
    }
}
