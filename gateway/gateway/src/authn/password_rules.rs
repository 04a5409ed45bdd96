//! Rules for new passwords (`400 weak_password`, CONTRACT section 3): 8–20 characters mixing at
//! least three of upper case, lower case, digits and symbols (the e-tax rule); not containing
//! the person's ID number (or its last six characters, the migrated users' initial password),
//! birth date (`YYYYMMDD`, from the ID number), phone number or username; and hard to guess: a
//! zxcvbn score of at least 3, with the personal strings given to zxcvbn as user inputs so
//! variations of them score low too. `Password1` passes the composition rule and fails the
//! estimate.

/// What the gateway knows of the person choosing the password.
#[derive(Debug, Clone, Copy, Default)]
pub struct Personal<'a> {
    /// The ID number: the password must contain neither it, nor its last six characters, nor the
    /// birth date in it (case-insensitive).
    pub id_number: Option<&'a str>,
    /// The phone number, which the password must not contain.
    pub phone: Option<&'a str>,
    /// The username, which the password must not contain (case-insensitive; only checked from three
    /// characters).
    pub username: Option<&'a str>,
}

/// The lowest zxcvbn score accepted (3: more than 10^8 guesses).
pub const MIN_SCORE: u8 = 3;

/// The first rule a new password breaks, so the person knows what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weakness {
    /// Fewer than 8 or more than 20 characters.
    Length,
    /// Fewer than three of upper case, lower case, digits and symbols.
    Composition,
    /// A control character.
    ControlCharacter,
    /// The same as the current password.
    SameAsOld,
    /// Contains the ID number or its last six characters.
    IdNumber,
    /// Contains the birth date (`YYYYMMDD`) from the ID number.
    BirthDate,
    /// Contains the phone number.
    Phone,
    /// Contains the username.
    Username,
    /// A zxcvbn score below [`MIN_SCORE`], with zxcvbn's own warning when it has one (English).
    Guessable {
        /// zxcvbn's score, 0 to 4.
        score: u8,
        /// zxcvbn's warning, if it gave one.
        hint: Option<String>,
    },
}

impl Weakness {
    /// The message for the person: (zh, en).
    pub fn messages(&self) -> (String, String) {
        let (zh, en) = match self {
            Weakness::Length => ("密码长度须为8-20位", "use 8 to 20 characters"),
            Weakness::Composition => (
                "密码须包含大写字母、小写字母、数字、符号中的至少三种",
                "mix at least three of: upper case, lower case, digits, symbols",
            ),
            Weakness::ControlCharacter => ("密码不能包含控制字符", "remove the control characters"),
            Weakness::SameAsOld => (
                "新密码不能与原密码相同",
                "choose a password different from the old one",
            ),
            Weakness::IdNumber => (
                "密码不能包含您的身份证号码或其后六位",
                "do not use your ID number or its last six characters",
            ),
            Weakness::BirthDate => ("密码不能包含您的出生日期", "do not use your birth date"),
            Weakness::Phone => ("密码不能包含您的手机号码", "do not use your phone number"),
            Weakness::Username => ("密码不能包含您的用户名", "do not use your username"),
            Weakness::Guessable { hint, .. } => {
                let en = match hint {
                    Some(h) => format!(
                        "the password is too easy to guess ({}): use a longer, less predictable one, not common words, names, keyboard patterns, years or dates",
                        h.trim_end_matches('.')
                    ),
                    None => "the password is too easy to guess: use a longer, less predictable one, not common words, names, keyboard patterns, years or dates".to_string(),
                };
                return (
                    "密码过于简单,容易被猜到:请使用更长、更不规律的组合,避免常见单词、姓名、键盘顺序、年份或日期"
                        .to_string(),
                    en,
                );
            }
        };
        (format!("{zh}。"), en.to_string())
    }
}

/// Check a new password; the first rule broken, in the order above.
pub fn check(password: &str, personal: &Personal<'_>) -> Result<(), Weakness> {
    let len = password.chars().count();
    if !(8..=20).contains(&len) {
        return Err(Weakness::Length);
    }
    if password.chars().any(char::is_control) {
        return Err(Weakness::ControlCharacter);
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password
            .chars()
            .any(|c| !c.is_ascii_alphanumeric() && !c.is_whitespace()),
    ];
    if classes.iter().filter(|c| **c).count() < 3 {
        return Err(Weakness::Composition);
    }
    let lower = password.to_lowercase();
    let mut inputs: Vec<String> = Vec::new();
    if let Some(id) = personal.id_number {
        let id = id.to_ascii_lowercase();
        let last6 = id
            .get(id.len().saturating_sub(6)..)
            .unwrap_or("")
            .to_string();
        if lower.contains(&id) || (!last6.is_empty() && lower.contains(&last6)) {
            return Err(Weakness::IdNumber);
        }
        // GB 11643: characters 7-14 are the birth date.
        if let Some(birth) = id
            .get(6..14)
            .filter(|b| b.bytes().all(|c| c.is_ascii_digit()))
        {
            if lower.contains(birth) {
                return Err(Weakness::BirthDate);
            }
            inputs.push(birth.to_string());
        }
        inputs.push(id.clone());
        inputs.push(last6);
    }
    if let Some(phone) = personal.phone {
        if lower.contains(phone) {
            return Err(Weakness::Phone);
        }
        inputs.push(phone.to_string());
    }
    if let Some(user) = personal.username {
        let user = user.to_lowercase();
        if user.chars().count() >= 3 && lower.contains(&user) {
            return Err(Weakness::Username);
        }
        inputs.push(user);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(password, &refs);
    let score = u8::from(estimate.score());
    if score < MIN_SCORE {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| w.to_string());
        return Err(Weakness::Guessable { score, hint });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANG: Personal<'static> = Personal {
        id_number: Some("140105199001011238"),
        phone: Some("13800138000"),
        username: Some("wangfang"),
    };

    fn weakness(pw: &str) -> Option<Weakness> {
        check(pw, &WANG).err()
    }

    #[test]
    fn the_issue_example_is_weak() {
        assert!(matches!(
            check("Password1", &Personal::default()),
            Err(Weakness::Guessable { .. })
        ));
        for common in [
            "Passw0rd!",
            "Qwerty123!",
            "Abcd1234!",
            "Admin@123",
            "P@ssw0rd2026",
        ] {
            assert!(
                matches!(weakness(common), Some(Weakness::Guessable { .. })),
                "{common}: {:?}",
                weakness(common)
            );
        }
    }

    #[test]
    fn personal_information_is_refused_by_name() {
        assert_eq!(weakness("X140105199001011238a"), Some(Weakness::IdNumber));
        assert_eq!(weakness("Abc011238xyz!"), Some(Weakness::IdNumber));
        assert_eq!(weakness("Tg-19900101-k!"), Some(Weakness::BirthDate));
        assert_eq!(weakness("Tel13800138000!"), Some(Weakness::Phone));
        assert_eq!(weakness("WangFang-Qz7!"), Some(Weakness::Username));
    }

    #[test]
    fn composition_and_length() {
        assert_eq!(weakness("Sh0rt!"), Some(Weakness::Length));
        assert_eq!(weakness("Ab1!Ab1!Ab1!Ab1!Ab1!x"), Some(Weakness::Length));
        assert_eq!(weakness("alllowercase1"), Some(Weakness::Composition));
        assert_eq!(weakness("Tab\there-Qz7"), Some(Weakness::ControlCharacter));
    }

    #[test]
    fn strong_passwords_pass() {
        // The fixtures' passwords and the ones the tests change to.
        for pw in [
            "Chang3-Me!now",
            "Zhao-Min-2026!",
            "Wang-Fang-2027!",
            "Secret-New-77",
            "Tq7#vLm2!pRx",
            "Kite-Harbor-91!",
        ] {
            assert_eq!(weakness(pw), None, "{pw}");
        }
    }

    #[test]
    fn every_weakness_has_both_messages() {
        for w in [
            Weakness::Length,
            Weakness::Composition,
            Weakness::ControlCharacter,
            Weakness::SameAsOld,
            Weakness::IdNumber,
            Weakness::BirthDate,
            Weakness::Phone,
            Weakness::Username,
            Weakness::Guessable {
                score: 1,
                hint: Some("This is a very common password.".into()),
            },
        ] {
            let (zh, en) = w.messages();
            assert!(!zh.is_empty() && !en.is_empty(), "{w:?}");
        }
    }
}
