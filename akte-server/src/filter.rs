//! List filters: the part of AIP-160 that akte's List methods need.
//!
//! A filter is one or more comparisons joined by `AND`: `field = value` or `field != value`.
//! A value is a double-quoted string (with `\"` and `\\` escapes) or a bare word of
//! letters, digits and `_ . - : /` (`true`, `false`, numbers, names). Each method says which
//! fields it knows and what they hold; anything else is INVALID_ARGUMENT naming `filter`.

use crate::error::ApiError;

/// Longest filter accepted.
const MAX_LEN: usize = 2048;
/// Most comparisons in one filter.
const MAX_TERMS: usize = 16;

/// One comparison of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The field compared.
    pub field: String,
    /// `!=` rather than `=`.
    pub negated: bool,
    /// The value, unquoted.
    pub value: String,
}

impl Comparison {
    /// Whether a field's actual value satisfies the comparison.
    pub fn holds(&self, actual: &str) -> bool {
        (actual == self.value) != self.negated
    }

    /// The value as a boolean (`true` or `false`).
    pub fn boolean(&self) -> Result<bool, ApiError> {
        match self.value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(bad(format!(
                "{} takes true or false, not {:?}",
                self.field,
                shown(v)
            ))),
        }
    }
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::field("filter", reason)
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

fn bare_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ':' | '/')
}

/// Parses a filter; `known` lists the fields the method understands. An empty filter is
/// no comparison.
pub fn parse(filter: &str, known: &[&str]) -> Result<Vec<Comparison>, ApiError> {
    if filter.len() > MAX_LEN {
        return Err(bad(format!("longer than {MAX_LEN} bytes")));
    }
    let mut p = Parser {
        chars: filter.chars().collect(),
        at: 0,
    };
    let mut out = Vec::new();
    p.space();
    if p.done() {
        return Ok(out);
    }
    loop {
        let c = p.comparison()?;
        if !known.contains(&c.field.as_str()) {
            return Err(bad(format!(
                "unknown field {:?}; this method filters on {}",
                shown(&c.field),
                known.join(", ")
            )));
        }
        out.push(c);
        if out.len() > MAX_TERMS {
            return Err(bad(format!("more than {MAX_TERMS} comparisons")));
        }
        p.space();
        if p.done() {
            return Ok(out);
        }
        if !p.keyword("AND") {
            return Err(bad(format!(
                "expected AND after a comparison at character {} (OR, NOT and parentheses are not supported)",
                p.at + 1
            )));
        }
        p.space();
    }
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn done(&self) -> bool {
        self.at >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        let end = self.at + word.chars().count();
        let matches = self
            .chars
            .get(self.at..end)
            .is_some_and(|s| s.iter().copied().eq(word.chars()))
            && self.chars.get(end).is_none_or(|c| c.is_whitespace());
        if matches {
            self.at = end;
        }
        matches
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(bare_char) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn comparison(&mut self) -> Result<Comparison, ApiError> {
        let field = self.word();
        if field.is_empty() {
            return Err(bad(format!(
                "expected a field name at character {}",
                self.at + 1
            )));
        }
        self.space();
        let negated = match (self.peek(), self.chars.get(self.at + 1)) {
            (Some('!'), Some('=')) => {
                self.at += 2;
                true
            }
            (Some('='), _) => {
                self.at += 1;
                false
            }
            _ => {
                return Err(bad(format!(
                    "expected = or != after {:?} (other operators are not supported)",
                    shown(&field)
                )))
            }
        };
        self.space();
        let value = match self.peek() {
            Some('"') => self.quoted()?,
            Some(c) if bare_char(c) => self.word(),
            _ => return Err(bad(format!("expected a value after {:?}", shown(&field)))),
        };
        Ok(Comparison {
            field,
            negated,
            value,
        })
    }

    fn quoted(&mut self) -> Result<String, ApiError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(bad("a quoted value is not closed")),
                Some('"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    match self.chars.get(self.at + 1) {
                        Some(c @ ('"' | '\\')) => out.push(*c),
                        _ => return Err(bad("only \\\" and \\\\ may be escaped")),
                    }
                    self.at += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(field: &str, negated: bool, value: &str) -> Comparison {
        Comparison {
            field: field.into(),
            negated,
            value: value.into(),
        }
    }

    #[test]
    fn parses_conjunctions_of_comparisons() {
        let known = ["active", "object", "done"];
        assert_eq!(parse("", &known).unwrap(), vec![]);
        assert_eq!(parse("   ", &known).unwrap(), vec![]);
        assert_eq!(
            parse("active = true", &known).unwrap(),
            vec![c("active", false, "true")]
        );
        assert_eq!(
            parse(
                r#"active=false AND object != "tenants/t/files/a \"b\"""#,
                &known
            )
            .unwrap(),
            vec![
                c("active", false, "false"),
                c("object", true, r#"tenants/t/files/a "b""#)
            ]
        );
        assert_eq!(
            parse("object = tenants/t/files/x", &known).unwrap(),
            vec![c("object", false, "tenants/t/files/x")]
        );
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        let known = ["active", "object"];
        for f in [
            "colour = red",
            "active",
            "active = ",
            "active > 1",
            "active = true OR active = false",
            "active = true AND",
            "active = true ANDobject = x",
            "(active = true)",
            r#"object = "open"#,
            r#"object = "a\n""#,
            "active = true active = false",
        ] {
            match parse(f, &known) {
                Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, "filter", "{f}"),
                other => panic!("{f}: {other:?}"),
            }
        }
        assert!(parse(&"a".repeat(3000), &known).is_err());
        let many = vec!["active = true"; 20].join(" AND ");
        assert!(parse(&many, &known).is_err());
        assert!(c("active", false, "yes").boolean().is_err());
        assert!(c("active", true, "true").boolean().unwrap());
    }
}
