//! Validated identifiers. The only way to get one is through `parse`, so code past the edge never
//! re-checks a string (parse, don't validate).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused. The message says which rule failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The identifier has the wrong number of characters (after trimming).
    #[error("expected {expected} characters, got {got}")]
    Length {
        /// The lengths this kind of identifier may have.
        expected: &'static str,
        /// The number of characters given.
        got: usize,
    },
    /// A character is not allowed at its position.
    #[error("character {position} (`{found}`) is not allowed here: expected {expected}")]
    Character {
        /// 1-based position of the character.
        position: usize,
        /// The character found there.
        found: char,
        /// What may stand there.
        expected: &'static str,
    },
    /// The birth date of an ID number (characters 7–14, `YYYYMMDD`) is not a calendar date
    /// between 1800 and 2100.
    #[error("birth date `{0}` is not a real date")]
    BirthDate(String),
    /// The final check character does not match the one computed from the others.
    #[error("check character is `{found}`, expected `{expected}`")]
    Check {
        /// The check character given.
        found: char,
        /// The check character computed.
        expected: char,
    },
    /// The check character of the organisation code inside a credit code (its 17th character)
    /// does not match.
    #[error("organisation code check character is `{found}`, expected `{expected}`")]
    OrgCheck {
        /// The check character given.
        found: char,
        /// The check character computed.
        expected: char,
    },
    /// Not a mainland mobile number.
    #[error("a mobile number is 11 digits starting with 13-19 (after +86/0086)")]
    Phone,
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The identifier in its normalised form, as stored and compared.
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
    /// Checks an ID number (surrounding whitespace ignored) and returns it with `x` upper-cased.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        let chars: [char; 18] =
            s.chars()
                .collect::<Vec<char>>()
                .try_into()
                .map_err(|chars: Vec<char>| IdError::Length {
                    expected: "18",
                    got: chars.len(),
                })?;
        let [body @ .., given_check] = chars;
        let mut sum = 0u32;
        for (i, (c, weight)) in body.iter().zip(ID_WEIGHTS).enumerate() {
            let d = c.to_digit(10).ok_or(IdError::Character {
                position: i + 1,
                found: *c,
                expected: "a digit",
            })?;
            sum += d * weight;
        }
        let last = given_check.to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(IdError::Character {
                position: 18,
                found: given_check,
                expected: "a digit or `X`",
            });
        }
        let birth: String = body[6..14].iter().collect();
        if !is_real_date(&birth) {
            return Err(IdError::BirthDate(birth));
        }
        #[expect(
            clippy::indexing_slicing,
            reason = "`sum % 11` is below 11, the length of ID_CHECK"
        )]
        let expected = ID_CHECK[(sum % 11) as usize];
        if last != expected {
            return Err(IdError::Check {
                found: given_check,
                expected,
            });
        }
        let mut normalised: String = body.iter().collect();
        normalised.push(last);
        Ok(IdNumber(normalised))
    }

    /// The last six characters: the initial password of a migrated user.
    pub fn last_six(&self) -> &str {
        // `parse` only builds 18 ASCII characters, so the split always succeeds.
        self.0
            .split_at_checked(12)
            .map_or(self.0.as_str(), |(_, six)| six)
    }

    /// `1401**********1238`: enough to recognise, not enough to use. For logs and notices.
    pub fn masked(&self) -> String {
        // `parse` only builds 18 ASCII characters, so both parts exist; were they missing, the
        // whole number would be masked rather than shown.
        match (self.0.get(..4), self.0.get(14..)) {
            (Some(head), Some(tail)) => format!("{head}**********{tail}"),
            _ => "*".repeat(18),
        }
    }
}

impl fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Full ID numbers never reach logs through Debug.
        write!(f, "IdNumber({})", self.masked())
    }
}

fn is_real_date(yyyymmdd: &str) -> bool {
    let Some(Ok(y)) = yyyymmdd.get(0..4).map(str::parse::<i32>) else {
        return false;
    };
    let Some(Ok(m)) = yyyymmdd.get(4..6).map(str::parse::<u8>) else {
        return false;
    };
    let Some(Ok(d)) = yyyymmdd.get(6..8).map(str::parse::<u8>) else {
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
    /// Checks a taxpayer id (surrounding whitespace ignored) and returns it upper-cased.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let s = s.trim().to_ascii_uppercase();
        let chars: Vec<char> = s.chars().collect();
        if let Ok(uscc) = <&[char; 18]>::try_from(chars.as_slice()) {
            return Self::parse_uscc(uscc).map(|()| TaxpayerId(s));
        }
        match chars.len() {
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

    fn parse_uscc(chars: &[char; 18]) -> Result<(), IdError> {
        let mut values = [0u32; 18];
        for (i, (value, c)) in values.iter_mut().zip(chars).enumerate() {
            *value = uscc_value(*c).ok_or(IdError::Character {
                position: i + 1,
                found: *c,
                expected: "a digit or a capital letter other than I, O, S, V, Z",
            })?;
        }
        // Characters 9–17: the organisation code (GB 11714), whose 9th character is its own check.
        let [_, _, _, _, _, _, _, _, org @ .., given_check] = *chars;
        let [org_body @ .., org_given_check] = org;
        let mut org_sum = 0u32;
        for (i, (c, weight)) in org_body.iter().zip(ORG_WEIGHTS).enumerate() {
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
            org_sum += v * weight;
        }
        let org_check = match 11 - org_sum % 11 {
            10 => 'X',
            11 => '0',
            n => char::from_digit(n, 10).unwrap_or('0'),
        };
        if org_given_check != org_check {
            return Err(IdError::OrgCheck {
                found: org_given_check,
                expected: org_check,
            });
        }
        let [values_body @ .., _] = values;
        let sum: u32 = values_body
            .iter()
            .zip(USCC_WEIGHTS)
            .map(|(v, w)| v * w)
            .sum();
        let check_value = (31 - sum % 31) % 31;
        let expected = USCC_ALPHABET
            .chars()
            .nth(check_value as usize)
            .unwrap_or('0');
        if given_check != expected {
            return Err(IdError::Check {
                found: given_check,
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
    /// Checks a mobile number and returns its 11 digits without prefix or separators.
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
            && matches!(bytes, [b'1', b'3'..=b'9', ..]);
        if ok {
            Ok(Phone(digits.to_string()))
        } else {
            Err(IdError::Phone)
        }
    }

    /// `138****8000`, as the tax bureau's notices show numbers.
    pub fn masked(&self) -> String {
        // `parse` only builds 11 ASCII digits, so both parts exist; were they missing, the whole
        // number would be masked rather than shown.
        match (self.0.get(..3), self.0.get(7..)) {
            (Some(head), Some(tail)) => format!("{head}****{tail}"),
            _ => "*".repeat(11),
        }
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

#[cfg(test)]
#[expect(clippy::indexing_slicing, reason = "tests fail loudly")]
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
