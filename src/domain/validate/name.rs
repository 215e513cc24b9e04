//! A service's name: trimmed, 1 to 200 characters, nothing that hides or
//! reorders what a dashboard and an alert show.

use super::{FieldError, MAX_NAME_CHARS};
use serde_json::Value;

/// The trimmed name, or an error naming `field`.
pub(crate) fn check_name(field: &str, v: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(s) = v.as_str() else {
        errors.push(FieldError::new(field, "must be a string"));
        return None;
    };
    let trimmed = s.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        errors.push(FieldError::new(field, "must not be empty"));
        None
    } else if chars > MAX_NAME_CHARS {
        errors.push(FieldError::new(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
        ));
        None
    } else if trimmed.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
        None
    } else if let Some(c) = trimmed.chars().find(|c| is_format_char(*c)) {
        // Bidi overrides reorder what a dashboard and an alert show
        // ("gnp.exe" that reads "exe.png"); zero-width characters make two
        // names look the same or a name look empty.
        errors.push(FieldError::new(
            field,
            format!(
                "must not contain invisible formatting characters such as U+{:04X}",
                u32::from(c)
            ),
        ));
        None
    } else if trimmed.chars().all(is_blank) {
        errors.push(FieldError::new(field, "must contain a visible character"));
        None
    } else {
        Some(trimmed.to_owned())
    }
}

/// Unicode's format characters (category Cf): bidi controls, zero-width
/// joiners and spaces, the byte order mark, invisible operators, tags.
fn is_format_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}

/// Characters that show as nothing without being format characters:
/// whitespace and the fillers (Hangul, Braille blank) used to fake a blank.
fn is_blank(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}'
        )
}
