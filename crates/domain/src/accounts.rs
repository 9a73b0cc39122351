//! Accounts: email addresses and the password policy.

use crate::error::ValidationError;
use crate::limits::{MAX_EMAIL_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

/// An email address, trimmed and lower-cased so that one person cannot hold two accounts that
/// differ only in case. Validation is deliberately shallow (one `@`, a dot in the domain, no
/// spaces): the only real check of an address is mail that arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let s = s.trim().to_lowercase();
        let bad =
            || ValidationError::new("email", "must be an email address such as ana@example.org");
        if s.chars().count() > MAX_EMAIL_CHARS {
            return Err(ValidationError::new(
                "email",
                format!("must be at most {MAX_EMAIL_CHARS} characters"),
            ));
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a new password: length bounds, and a strength estimate (zxcvbn, which carries lists of
/// common and breached passwords, names, and keyboard patterns) that must reach "safely
/// unguessable against online attacks". The email address counts as known to an attacker.
pub fn check_password_policy(password: &str, email: &str) -> Result<(), ValidationError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters; a few unrelated words make a strong one"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(ValidationError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    let local_part = email.split('@').next().unwrap_or(email);
    let estimate = zxcvbn::zxcvbn(password, &[email, local_part, "glucosync", "diabetes"]);
    if (estimate.score() as u8) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return Err(ValidationError::new(
            "password",
            format!("is too easy to guess{hint}: it resembles common or breached passwords. Try a few unrelated words"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ana@Example.ORG ").expect("valid").as_str(),
            "ana@example.org"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.org",
            "ana@example",
            "a na@example.org",
            "a@b@c.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weak_and_breached_looking_passwords_are_refused() {
        for weak in [
            "password123",
            "qwertyuiop",
            "1234567890",
            "ana@example.org",
            "glucosync2026",
        ] {
            assert!(
                check_password_policy(weak, "ana@example.org").is_err(),
                "{weak}"
            );
        }
        assert!(check_password_policy("short", "ana@example.org").is_err());
        check_password_policy("violet tractor harbour sings", "ana@example.org").expect("strong");
    }
}

/// What a credential may do. Browser sessions carry every scope plus account management;
/// personal API tokens carry the scopes chosen when they were made.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Scope {
    /// Read one's own readings, treatments, settings and reports.
    #[serde(rename = "read")]
    Read,
    /// Upload and delete readings (what a CGM uploader on a phone needs, and nothing more).
    #[serde(rename = "readings:write")]
    ReadingsWrite,
    /// Create, change and delete treatments.
    #[serde(rename = "treatments:write")]
    TreatmentsWrite,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::ReadingsWrite, Scope::TreatmentsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::ReadingsWrite => "readings:write",
            Scope::TreatmentsWrite => "treatments:write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Space-separated, as stored.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Parses the stored form, ignoring scopes this version does not know.
    pub fn split(s: &str) -> Vec<Scope> {
        s.split_whitespace().filter_map(Scope::parse).collect()
    }
}
