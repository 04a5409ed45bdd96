//! Validated identifiers. The only way to get one is through `parse`, so code past the edge never
//! re-checks a string (parse, don't validate).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an identifier was refused. The message says which rule failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected {expected} characters, got {got}")]
    Length { expected: &'static str, got: usize },
    #[error("character {position} (`{found}`) is not allowed here")]
    Character { position: usize, found: char },
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
            })?;
            sum += d * ID_WEIGHTS[i];
        }
        let last = chars[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == 'X') {
            return Err(IdError::Character {
                position: 18,
                found: chars[17],
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
}
