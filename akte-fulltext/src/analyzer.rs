//! How text becomes terms, the same at index and at query time.
//!
//! German text: words of letters and digits, lower-cased, umlauts folded, then stemmed
//! (Snowball German, tantivy's `stemmer` feature). Folding has three steps so that
//! *Müller*, *Mueller* and *Muller* are one term: `ä ö ü ß` become `ae oe ue ss` (the
//! German transcription), every other accent is dropped by ASCII folding (*José* →
//! *jose*), and then the digraphs `ae oe ue` become `a o u` (so the transcription and
//! the bare vowel meet). The last step merges a few words that differ only there (*Feuer*
//! and *Feur*), a price worth paying for names, which agencies write every way. Folding
//! runs before stemming, so the stemmer sees one spelling of every word.
//!
//! The exact analyzer is the same without stemming: prefix queries (`verwalt*`) match
//! unstemmed words, since a stem is not always a prefix of what a user types.

use std::mem;

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

/// Name of the stemmed German analyzer.
pub const GERMAN: &str = "akte_de";
/// Name of the folded, unstemmed analyzer.
pub const EXACT: &str = "akte_exact";
/// Longer tokens are dropped (they are hashes, base64, not words).
const MAX_TOKEN: usize = 60;

/// The stemmed German analyzer.
pub fn german() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN))
        .filter(LowerCaser)
        .filter(Rewrite(transcribe_umlauts))
        .filter(AsciiFoldingFilter)
        .filter(Rewrite(collapse_digraphs))
        .filter(Stemmer::new(Language::German))
        .build()
}

/// The folded analyzer without stemming.
pub fn exact() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN))
        .filter(LowerCaser)
        .filter(Rewrite(transcribe_umlauts))
        .filter(AsciiFoldingFilter)
        .filter(Rewrite(collapse_digraphs))
        .build()
}

/// Registers both analyzers with an index.
pub fn register(index: &tantivy::Index) {
    let m = index.tokenizers();
    m.register(GERMAN, german());
    m.register(EXACT, exact());
}

/// The terms `analyzer` makes of `text`, in order.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut s = analyzer.token_stream(text);
    while s.advance() {
        out.push(s.token().text.clone());
    }
    out
}

/// `ä ö ü ß` (lower case; the lower caser ran before) as `ae oe ue ss`.
fn transcribe_umlauts(word: &str, out: &mut String) -> bool {
    if word.is_ascii() {
        return false;
    }
    out.clear();
    for c in word.chars() {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' | 'ẞ' => out.push_str("ss"),
            c => out.push(c),
        }
    }
    true
}

/// `ae oe ue` as `a o u`.
fn collapse_digraphs(word: &str, out: &mut String) -> bool {
    let b = word.as_bytes();
    if !b
        .windows(2)
        .any(|w| matches!(w, [b'a' | b'o' | b'u', b'e']))
    {
        return false;
    }
    out.clear();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if matches!(c, 'a' | 'o' | 'u') && chars.peek() == Some(&'e') {
            chars.next();
        }
    }
    true
}

/// A token filter rewriting each token's text with a function that answers whether it
/// wrote a new text into the buffer.
#[derive(Clone, Copy)]
struct Rewrite(fn(&str, &mut String) -> bool);

impl TokenFilter for Rewrite {
    type Tokenizer<T: Tokenizer> = RewriteTokenizer<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> RewriteTokenizer<T> {
        RewriteTokenizer {
            inner: tokenizer,
            f: self.0,
            buffer: String::new(),
        }
    }
}

#[derive(Clone)]
struct RewriteTokenizer<T> {
    inner: T,
    f: fn(&str, &mut String) -> bool,
    buffer: String,
}

impl<T: Tokenizer> Tokenizer for RewriteTokenizer<T> {
    type TokenStream<'a> = RewriteStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        RewriteStream {
            tail: self.inner.token_stream(text),
            f: self.f,
            buffer: &mut self.buffer,
        }
    }
}

struct RewriteStream<'a, S> {
    tail: S,
    f: fn(&str, &mut String) -> bool,
    buffer: &'a mut String,
}

impl<S: TokenStream> TokenStream for RewriteStream<'_, S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        if (self.f)(&self.tail.token().text, self.buffer) {
            mem::swap(&mut self.tail.token_mut().text, self.buffer);
        }
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(a: &mut TextAnalyzer, w: &str) -> String {
        let t = terms(a, w);
        assert_eq!(t.len(), 1, "{w}: {t:?}");
        t.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn mueller_spellings_are_one_term() {
        for a in [&mut german(), &mut exact()] {
            let m = one(a, "Müller");
            assert_eq!(one(a, "Mueller"), m);
            assert_eq!(one(a, "Muller"), m);
            assert_eq!(one(a, "MÜLLER"), m);
        }
        let mut g = german();
        assert_eq!(one(&mut g, "Straße"), one(&mut g, "Strasse"));
        assert_eq!(
            one(&mut g, "Gebührenbescheid"),
            one(&mut g, "Gebuehrenbescheid")
        );
        assert_eq!(one(&mut exact(), "José"), "jose");
        // Different words stay apart.
        assert_ne!(one(&mut g, "Müller"), one(&mut g, "Miller"));
    }

    #[test]
    fn german_stemming_joins_inflections() {
        let mut g = german();
        assert_eq!(one(&mut g, "Anträge"), one(&mut g, "Antrag"));
        assert_eq!(one(&mut g, "Genehmigungen"), one(&mut g, "Genehmigung"));
        assert_eq!(one(&mut g, "Gebäudes"), one(&mut g, "Gebäude"));
        // The exact analyzer keeps the whole word.
        assert_eq!(one(&mut exact(), "Genehmigungen"), "genehmigungen");
    }

    #[test]
    fn words_are_split_on_punctuation_and_long_tokens_dropped() {
        let mut e = exact();
        assert_eq!(
            terms(&mut e, "Az. 12-345/2024, Bauamt"),
            ["az", "12", "345", "2024", "bauamt"]
        );
        let long = "x".repeat(MAX_TOKEN + 1);
        assert!(terms(&mut e, &long).is_empty());
    }
}
