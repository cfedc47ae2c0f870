//! Display names: what other people see, so trimmed, bounded and free of characters
//! that break or disguise text (control and bidirectional-override characters).

use super::FieldError;

pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// A trimmed display name of 1 to 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

/// Invisible formatting that can reorder or hide text around a name (Trojan Source).
fn is_disguising(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

impl DisplayName {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(FieldError::new("display_name", "must not be empty"));
        }
        if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(FieldError::new(
                "display_name",
                format!("must be at most {MAX_DISPLAY_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(|c| c.is_control() || is_disguising(c)) {
            return Err(FieldError::new(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        let name = DisplayName::parse("  Ada Lovelace \t").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name.as_str(), "Ada Lovelace");
    }

    #[test]
    fn length_counts_characters_after_trimming() {
        assert!(DisplayName::parse(&"é".repeat(100)).is_ok());
        assert!(DisplayName::parse(&format!("  {}  ", "a".repeat(100))).is_ok());
        let error = DisplayName::parse(&"a".repeat(101))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("display_name: must be at most 100 characters")
        );
    }

    #[test]
    fn empty_control_and_bidi_characters_are_refused() {
        for name in [
            "",
            "   ",
            "a\u{0}b",
            "line\nbreak",
            "tab\tinside",
            "evil\u{202E}txt",
            "\u{7f}x",
        ] {
            assert!(DisplayName::parse(name).is_err(), "{name:?} was accepted");
        }
    }
}
