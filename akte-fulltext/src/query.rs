//! The query language of a text search: words (all must occur, in subject or text, in
//! any inflection), `"phrases"` (the words in this order) and prefixes (`verwalt*`, at
//! least [`MIN_PREFIX`] characters). Nothing else is syntax, so no user input is an
//! error except one with no searchable word or beyond the limits.

use tantivy::query::{BooleanQuery, BoostQuery, Occur, PhraseQuery, Query, RegexQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use crate::analyzer;
use crate::index::Fields;
use crate::FulltextError;

/// Longest query text, in bytes.
pub const MAX_QUERY: usize = 1000;
/// Most words, phrases and prefixes in one query.
pub const MAX_CLAUSES: usize = 32;
/// Shortest prefix (shorter ones would expand to much of the vocabulary).
pub const MIN_PREFIX: usize = 2;
/// Weight of a match in the subject against one in the text.
const TITLE_BOOST: f32 = 2.0;

/// One part of a query as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// A word.
    Word(String),
    /// Words in this order.
    Phrase(String),
    /// The start of a word.
    Prefix(String),
}

/// Splits `text` into clauses.
pub fn clauses(text: &str) -> Result<Vec<Clause>, FulltextError> {
    if text.len() > MAX_QUERY {
        return Err(FulltextError::Query(format!(
            "longer than {MAX_QUERY} bytes"
        )));
    }
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('"') {
            // An unclosed quote runs to the end.
            let (phrase, next) = after.split_once('"').unwrap_or((after, ""));
            out.push(Clause::Phrase(phrase.to_owned()));
            rest = next;
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let (word, next) = rest.split_at(end);
        rest = next;
        match word.strip_suffix('*') {
            Some(p) => out.push(Clause::Prefix(p.trim_end_matches('*').to_owned())),
            None => out.push(Clause::Word(word.to_owned())),
        }
    }
    if out.len() > MAX_CLAUSES {
        return Err(FulltextError::Query(format!(
            "more than {MAX_CLAUSES} words, phrases and prefixes"
        )));
    }
    Ok(out)
}

/// A parsed query.
pub(crate) struct TextQuery {
    query: Box<dyn Query>,
}

impl TextQuery {
    pub(crate) fn query(&self) -> &dyn Query {
        self.query.as_ref()
    }
}

/// `text` as a tantivy query over `f`.
pub(crate) fn parse(text: &str, f: &Fields) -> Result<TextQuery, FulltextError> {
    let mut german = analyzer::german();
    let mut exact = analyzer::exact();
    let mut musts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for c in clauses(text)? {
        let q = match &c {
            Clause::Word(w) | Clause::Phrase(w) => {
                let terms = analyzer::terms(&mut german, w);
                in_title_or_body(&terms, f)
            }
            Clause::Prefix(p) => {
                let terms = analyzer::terms(&mut exact, p);
                match terms.split_last() {
                    None => None,
                    Some((last, _)) if last.chars().count() < MIN_PREFIX => {
                        return Err(FulltextError::Query(format!(
                            "the prefix {p:?} is shorter than {MIN_PREFIX} letters"
                        )))
                    }
                    Some((last, before)) => {
                        let mut parts: Vec<(Occur, Box<dyn Query>)> = before
                            .iter()
                            .map(|t| (Occur::Must, term(f.exact, t)))
                            .collect();
                        let re = RegexQuery::from_pattern(&format!("{}.*", escape(last)), f.exact)?;
                        parts.push((Occur::Must, Box::new(re)));
                        Some(Box::new(BooleanQuery::new(parts)) as Box<dyn Query>)
                    }
                }
            }
        };
        if let Some(q) = q {
            musts.push((Occur::Must, q));
        }
    }
    if musts.is_empty() {
        return Err(FulltextError::Query(
            "no searchable word (words are letters and digits)".into(),
        ));
    }
    Ok(TextQuery {
        query: Box::new(BooleanQuery::new(musts)),
    })
}

fn term(field: Field, t: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, t),
        IndexRecordOption::WithFreqsAndPositions,
    ))
}

fn phrase(field: Field, terms: &[String]) -> Box<dyn Query> {
    Box::new(PhraseQuery::new(
        terms
            .iter()
            .map(|t| Term::from_field_text(field, t))
            .collect(),
    ))
}

/// The terms (in order, as a phrase when more than one) in the subject or in the text.
fn in_title_or_body(terms: &[String], f: &Fields) -> Option<Box<dyn Query>> {
    let (title, body) = match terms {
        [] => return None,
        [t] => (term(f.title, t), term(f.body, t)),
        many => (phrase(f.title, many), phrase(f.body, many)),
    };
    Some(Box::new(BooleanQuery::new(vec![
        (Occur::Should, Box::new(BoostQuery::new(title, TITLE_BOOST))),
        (Occur::Should, body),
    ])))
}

/// A term as a literal in tantivy's regular expressions.
fn escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_of_words_phrases_and_prefixes() {
        let c = clauses(r#"Bauantrag "Frau Müller"  verwalt* "offen"#).unwrap();
        assert_eq!(
            c,
            vec![
                Clause::Word("Bauantrag".into()),
                Clause::Phrase("Frau Müller".into()),
                Clause::Prefix("verwalt".into()),
                Clause::Phrase("offen".into()),
            ]
        );
        assert!(clauses(&"a ".repeat(MAX_CLAUSES + 1)).is_err());
        assert!(clauses(&"x".repeat(MAX_QUERY + 1)).is_err());
    }
}
