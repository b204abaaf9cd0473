//! Input validation of the records model: every rule in one place, every error naming the
//! field and what is wrong.

use chrono::NaiveDate;

use super::RecordsError;

/// Longest subject or title, in characters.
pub const MAX_SUBJECT: usize = 1000;
/// Longest free text (description, notes), in characters.
pub const MAX_TEXT: usize = 20_000;
/// Longest name (clerk, sender, recipient, lead unit, external reference), in characters.
pub const MAX_NAME: usize = 256;
/// Most recipients of one document.
pub const MAX_RECIPIENTS: usize = 200;
/// Longest plan unit code, in characters.
pub const MAX_CODE: usize = 40;
/// Most renditions of one version.
pub const MAX_RENDITIONS: usize = 32;
/// Longest idempotency key, in bytes.
pub const MAX_REQUEST_ID: usize = 128;

fn invalid(field: &str, reason: impl Into<String>) -> RecordsError {
    RecordsError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// A required single-line text: not blank, at most `max` characters, no control characters.
pub fn line(field: &str, value: &str, max: usize) -> Result<(), RecordsError> {
    if value.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    optional_line(field, value, max)
}

/// An optional single-line text (may be empty).
pub fn optional_line(field: &str, value: &str, max: usize) -> Result<(), RecordsError> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(
            field,
            format!("is {n} characters long, at most {max} allowed"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "must not contain control characters or line breaks",
        ));
    }
    if value != value.trim() {
        return Err(invalid(field, "must not begin or end with white space"));
    }
    Ok(())
}

/// Free text: line breaks and tabs allowed, other control characters not.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), RecordsError> {
    let n = value.chars().count();
    if n > max {
        return Err(invalid(
            field,
            format!("is {n} characters long, at most {max} allowed"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A plan unit code such as `022.31`: groups of 1 to 6 digits separated by dots.
pub fn plan_code(value: &str) -> Result<(), RecordsError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_CODE
        && value
            .split('.')
            .all(|g| !g.is_empty() && g.len() <= 6 && g.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(invalid(
            "code",
            format!(
                "{:?} is not a plan unit code: groups of 1 to 6 digits separated by dots, e.g. 022.31, at most {MAX_CODE} characters",
                value.chars().take(60).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// Begin must not be after end.
pub fn running_time(begin: Option<NaiveDate>, end: Option<NaiveDate>) -> Result<(), RecordsError> {
    if let (Some(b), Some(e)) = (begin, end) {
        if b > e {
            return Err(invalid(
                "end",
                format!("running time ends ({e}) before it begins ({b})"),
            ));
        }
    }
    Ok(())
}

/// A file name of a rendition: 1 to 255 bytes, no path separators or control characters.
pub fn file_name(value: &str) -> Result<(), RecordsError> {
    let bad = value.is_empty()
        || value.len() > 255
        || value == "."
        || value == ".."
        || value
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\');
    if bad {
        return Err(invalid(
            "file_name",
            format!(
                "{:?} is not a file name: 1 to 255 bytes, no '/', '\\' or control characters",
                value.chars().take(60).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// A media type `type/subtype` (RFC 6838 characters, parameters not allowed).
pub fn media_type(value: &str) -> Result<(), RecordsError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match value.split_once('/') {
        Some((t, s)) if token(t) && token(s) => Ok(()),
        _ => Err(invalid(
            "media_type",
            format!(
                "{:?} is not a media type such as application/pdf",
                value.chars().take(60).collect::<String>()
            ),
        )),
    }
}

/// An idempotency key: 1 to 128 bytes of printable ASCII.
pub fn request_id(value: &str) -> Result<(), RecordsError> {
    if value.is_empty()
        || value.len() > MAX_REQUEST_ID
        || !value.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid(
            "request_id",
            format!("must be 1 to {MAX_REQUEST_ID} printable ASCII characters"),
        ));
    }
    Ok(())
}

/// A file reference pattern: `{unit}`, `{year}` and `{seq}` or `{seq:N}` (N = 1..9 digits
/// of zero padding), other characters printable; at most 64 characters.
pub fn reference_pattern(value: &str) -> Result<(), RecordsError> {
    let err = |reason: &str| invalid("reference_pattern", reason.to_owned());
    if value.chars().count() > 64 || value.chars().any(char::is_control) {
        return Err(err("at most 64 printable characters"));
    }
    let mut rest = value;
    let (mut unit, mut year, mut seq) = (false, false, false);
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').ok_or_else(|| err("unclosed '{'"))?;
        let name = &rest[open + 1..open + close];
        match name {
            "unit" => unit = true,
            "year" => year = true,
            "seq" => seq = true,
            n if n
                .strip_prefix("seq:")
                .map(|w| w.strip_prefix('0').unwrap_or(w))
                .is_some_and(|w| w.len() == 1 && matches!(w.as_bytes()[0], b'1'..=b'9')) =>
            {
                seq = true
            }
            other => {
                return Err(invalid(
                    "reference_pattern",
                    format!(
                    "unknown placeholder {{{other}}}; use {{unit}}, {{year}}, {{seq}} or {{seq:N}}"
                ),
                ))
            }
        }
        rest = &rest[open + close + 1..];
    }
    if !(unit && year && seq) {
        return Err(err(
            "must contain {unit}, {year} and {seq} (or {seq:N}) so that references are unique",
        ));
    }
    Ok(())
}

/// Renders a file reference from a (valid) pattern.
pub fn render_reference(pattern: &str, unit: &str, year: i32, seq: u32) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        match name {
            "unit" => out.push_str(unit),
            "year" => out.push_str(&year.to_string()),
            "seq" => out.push_str(&seq.to_string()),
            n => {
                let width = n
                    .strip_prefix("seq:")
                    .and_then(|w| w.parse::<usize>().ok())
                    .unwrap_or(1);
                out.push_str(&format!("{seq:0width$}"));
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_codes() {
        for ok in ["0", "022", "022.31", "1.2.3.4", "123456"] {
            plan_code(ok).unwrap();
        }
        for bad in [
            "", ".", "022.", ".31", "022..31", "02a", "1234567", "022 31", "٣",
        ] {
            assert!(plan_code(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reference_patterns() {
        reference_pattern("{unit}-{seq:04}/{year}").unwrap();
        reference_pattern("AZ {unit}/{year}/{seq}").unwrap();
        for bad in [
            "{unit}-{seq}",
            "{unit}{year}",
            "{unit}-{seq:0}/{year}",
            "{x}{unit}{seq}{year}",
            "{unit}-{seq/{year}",
        ] {
            assert!(reference_pattern(bad).is_err(), "{bad}");
        }
        assert_eq!(
            render_reference("{unit}-{seq:04}/{year}", "022.31", 2026, 5),
            "022.31-0005/2026"
        );
        assert_eq!(
            render_reference("AZ {unit}/{year}/{seq}", "1", 2027, 12),
            "AZ 1/2027/12"
        );
    }

    #[test]
    fn texts_and_names() {
        assert!(line("subject", "", 10).is_err());
        assert!(line("subject", "   ", 10).is_err());
        assert!(line("subject", "a\nb", 10).is_err());
        assert!(line("subject", &"x".repeat(11), 10).is_err());
        assert!(line("subject", " padded", 10).is_err());
        line("subject", "Bauantrag", 10).unwrap();
        text("notes", "line one\nline two", 100).unwrap();
        assert!(text("notes", "bell\u{7}", 100).is_err());
        file_name("Bescheid 2026.pdf").unwrap();
        for bad in ["", "a/b", "..", "a\\b", "x\u{0}"] {
            assert!(file_name(bad).is_err());
        }
        media_type("application/pdf").unwrap();
        media_type("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
            .unwrap();
        for bad in ["pdf", "application/", "/pdf", "text/plain; charset=utf-8"] {
            assert!(media_type(bad).is_err(), "{bad}");
        }
    }
}

/// Whether `reference` is one the tenant's `pattern` can produce for plan unit `unit`:
/// literal parts as they are, `{unit}` the unit's code, `{year}` four digits, `{seq}` one
/// or more digits (`{seq:N}` at least N). For flagging imported references that were not
/// made here.
pub fn reference_matches(pattern: &str, unit: &str, reference: &str) -> bool {
    enum Part<'a> {
        Lit(&'a str),
        Digits { min: usize, max: usize },
    }
    let mut parts = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        parts.push(Part::Lit(&rest[..open]));
        let Some(close) = rest[open..].find('}') else {
            return false;
        };
        match &rest[open + 1..open + close] {
            "unit" => parts.push(Part::Lit(unit)),
            "year" => parts.push(Part::Digits { min: 4, max: 4 }),
            "seq" => parts.push(Part::Digits { min: 1, max: 10 }),
            n => {
                let width = n
                    .strip_prefix("seq:")
                    .and_then(|w| w.parse::<usize>().ok())
                    .unwrap_or(1);
                parts.push(Part::Digits {
                    min: width.max(1),
                    max: 10,
                })
            }
        }
        rest = &rest[open + close + 1..];
    }
    parts.push(Part::Lit(rest));
    // Tries every split of digit runs; patterns have at most a few parts.
    fn go(parts: &[Part<'_>], s: &str) -> bool {
        match parts.split_first() {
            None => s.is_empty(),
            Some((Part::Lit(l), tail)) => s.strip_prefix(l).is_some_and(|r| go(tail, r)),
            Some((Part::Digits { min, max }, tail)) => {
                let run = s.bytes().take_while(u8::is_ascii_digit).count();
                (*min..=run.min(*max)).any(|n| go(tail, &s[n..]))
            }
        }
    }
    go(&parts, reference)
}

#[cfg(test)]
mod reference_tests {
    use super::*;

    #[test]
    fn references_are_matched_against_the_pattern() {
        let p = "{unit}-{seq:04}/{year}";
        assert!(reference_matches(p, "632.1", "632.1-0005/2014"));
        assert!(reference_matches(p, "632.1", "632.1-12345/2014"));
        assert!(!reference_matches(p, "632.1", "632.1-5/2014"));
        assert!(!reference_matches(p, "632.1", "632.2-0005/2014"));
        assert!(!reference_matches(p, "632.1", "AZ 632.1/5"));
        assert!(!reference_matches(p, "632.1", "632.1-0005/14"));
        assert!(reference_matches("{year}{seq}{unit}", "A", "20141A"));
        assert!(reference_matches(
            p,
            "1.2",
            &render_reference(p, "1.2", 2026, 7)
        ));
    }
}
