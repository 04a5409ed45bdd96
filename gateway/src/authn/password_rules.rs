//! Password rules for new passwords (`weak_password`): 8–20 characters, at least three of
//! upper case, lower case, digits and symbols, and not containing the ID number or username.

/// Why a new password is refused (English; the HTTP layer gives the contract's messages).
pub fn check(
    password: &str,
    id_number: Option<&str>,
    username: Option<&str>,
) -> Result<(), &'static str> {
    let len = password.chars().count();
    if !(8..=20).contains(&len) {
        return Err("a password has 8 to 20 characters");
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
        return Err("a password mixes at least three of: upper case, lower case, digits, symbols");
    }
    if password.chars().any(char::is_control) {
        return Err("a password has no control characters");
    }
    let lower = password.to_ascii_lowercase();
    if let Some(id) = id_number
        && (lower.contains(&id.to_ascii_lowercase())
            || lower.contains(&id[id.len().saturating_sub(6)..].to_ascii_lowercase()))
    {
        return Err("a password must not contain the ID number or its last six characters");
    }
    if let Some(user) = username
        && user.len() >= 3
        && lower.contains(&user.to_ascii_lowercase())
    {
        return Err("a password must not contain the username");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn rules() {
        let id = Some("140105199001011238");
        assert!(check("Chang3-Me!now", id, Some("wangfang")).is_ok());
        assert!(check("Sh0rt!", id, None).is_err());
        assert!(check("alllowercase1", id, None).is_err());
        assert!(check("ABCdef123456789012345", id, None).is_err()); // 21 chars
        assert!(check("Abc011238xyz", id, None).is_err()); // last six of the ID
        assert!(check("X140105199001011238", id, None).is_err());
        assert!(check("Wangfang-2026", id, Some("wangfang")).is_err());
        assert!(check("Abcdefg1", id, None).is_ok());
    }
}
