//! One tenant's full-text index: a tantivy index in a directory of its own.
//!
//! The index is derived: every commit carries, as its payload, the journal position it
//! covers (all entries before it are indexed) and the layout version; an index that
//! cannot be opened, or that another layout version wrote, is set aside (renamed to
//! `<dir>.aside`, replacing an older one) and built again from the journal.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::analyzer;
use crate::query::{parse, TextQuery};
use crate::FulltextError;

/// Layout version; a change of schema or analyzers raises it, and older indexes are
/// rebuilt.
pub const LAYOUT: u32 = 1;
/// Memory of the index writer (tantivy's minimum is 15 MB per thread).
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// Most matches a text search ranks; more are not reached by paging.
pub const MAX_HITS: usize = 10_000;
/// Characters of a snippet.
const SNIPPET_CHARS: usize = 200;

/// What a commit records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Payload {
    layout: u32,
    position: u64,
}

/// The fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// The document's id (hyphenated UUID): one index document per akte document.
    pub id: Field,
    /// The id's two halves as columns: a search resolves thousands of hits to ids, which
    /// from the document store would cost a block decompression each.
    pub id_hi: Field,
    /// See `id_hi`.
    pub id_lo: Field,
    /// Its parent chain (case, sub-file, file ids): what a refile or destruction of an
    /// object above it must look at again.
    pub above: Field,
    /// Subject (Betreff), stemmed.
    pub title: Field,
    /// Extracted text of the newest version's primary rendition, stemmed; stored for
    /// snippets.
    pub body: Field,
    /// Subject and text, folded but not stemmed (prefix queries).
    pub exact: Field,
    /// Creation time (microseconds since the epoch), for date order.
    pub created: Field,
    /// Why extraction gave no or partial text, if it did.
    pub note: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let german = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analyzer::GERMAN)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let exact = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analyzer::EXACT)
            .set_index_option(IndexRecordOption::Basic),
    );
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        id_hi: b.add_u64_field("id_hi", FAST),
        id_lo: b.add_u64_field("id_lo", FAST),
        above: b.add_text_field("above", STRING),
        title: b.add_text_field("title", german.clone().set_stored()),
        body: b.add_text_field("body", german.set_stored()),
        exact: b.add_text_field("exact", exact),
        created: b.add_i64_field("created", FAST | STORED),
        note: b.add_text_field("note", STORED),
    };
    (b.build(), f)
}

/// One document as indexed.
#[derive(Debug, Clone)]
pub struct IndexedDoc {
    /// The document.
    pub id: Uuid,
    /// Its parent chain.
    pub above: Vec<Uuid>,
    /// Subject.
    pub title: String,
    /// Extracted text.
    pub body: String,
    /// Creation time, microseconds since the epoch.
    pub created: i64,
    /// Extraction note.
    pub note: Option<String>,
}

/// The order of text search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ranking {
    /// Best match first.
    #[default]
    Relevance,
    /// Newest document first.
    NewestFirst,
    /// Oldest document first.
    OldestFirst,
}

/// One match.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The document.
    pub id: Uuid,
    /// BM25 relevance.
    pub score: f32,
}

/// A tenant's index, opened for writing (by the indexer) and searching.
pub struct TextIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Option<Mutex<IndexWriter>>,
}

impl std::fmt::Debug for TextIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextIndex").field("dir", &self.dir).finish()
    }
}

impl TextIndex {
    /// Opens the index in `dir` for writing, creating it; one that cannot be opened or is
    /// of another layout is set aside and a new, empty one made (position 0).
    pub fn open(dir: &Path) -> Result<TextIndex, FulltextError> {
        match Self::open_existing(dir, true) {
            Ok(Some(i)) => return Ok(i),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "the full-text index cannot be used; it is set aside and rebuilt from the journal");
                set_aside(dir)?;
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| FulltextError::io(dir, e))?;
        let (schema, _) = schema();
        let index = Index::create_in_dir(dir, schema)?;
        let i = Self::wrap(dir, index, true)?;
        i.commit(0)?;
        Ok(i)
    }

    /// Opens an existing index for reading only (verification beside a running akted:
    /// tantivy readers take no lock); `None` when there is none.
    pub fn open_read_only(dir: &Path) -> Result<Option<TextIndex>, FulltextError> {
        Self::open_existing(dir, false)
    }

    fn open_existing(dir: &Path, write: bool) -> Result<Option<TextIndex>, FulltextError> {
        if !dir.join("meta.json").is_file() {
            return Ok(None);
        }
        let index = if write {
            Index::open_in_dir(dir)?
        } else {
            Index::open(crate::read_only::ReadOnlyDirectory::open(dir)?)?
        };
        let (want, _) = schema();
        if index.schema() != want {
            return Err(FulltextError::Layout(format!(
                "schema differs from layout {LAYOUT}"
            )));
        }
        let i = Self::wrap(dir, index, write)?;
        match i.payload()? {
            Some(p) if p.layout == LAYOUT => Ok(Some(i)),
            Some(p) => Err(FulltextError::Layout(format!(
                "layout {} (this build writes {LAYOUT})",
                p.layout
            ))),
            // Just created, its first commit not yet made (a reader beside akted can see
            // that moment): an empty index at position 0.
            None if !write => Ok(Some(i)),
            None => Err(FulltextError::Layout("no position recorded".into())),
        }
    }

    fn wrap(dir: &Path, index: Index, write: bool) -> Result<TextIndex, FulltextError> {
        analyzer::register(&index);
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer = if write {
            // One indexing thread: the machine's cores belong to the writes.
            Some(Mutex::new(index.writer_with_num_threads(1, WRITER_MEMORY)?))
        } else {
            None
        };
        Ok(TextIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            writer,
        })
    }

    fn payload(&self) -> Result<Option<Payload>, FulltextError> {
        let metas = self.index.load_metas()?;
        Ok(metas
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str::<Payload>(p).ok()))
    }

    /// The journal position the last commit covers.
    pub fn position(&self) -> Result<u64, FulltextError> {
        Ok(self.payload()?.map_or(0, |p| p.position))
    }

    fn writer(&self) -> Result<MutexGuard<'_, IndexWriter>, FulltextError> {
        let w = self.writer.as_ref().ok_or(FulltextError::ReadOnly)?;
        w.lock().map_err(|_| FulltextError::Poisoned)
    }

    /// Replaces the document `d.id` (or adds it).
    pub fn put(&self, d: &IndexedDoc) -> Result<(), FulltextError> {
        let w = self.writer()?;
        w.delete_term(Term::from_field_text(
            self.fields.id,
            &d.id.hyphenated().to_string(),
        ));
        self.add(&w, d)
    }

    /// Adds the document `d.id`, which the index must not hold yet (no delete of an
    /// older copy: the caller knows there is none, e.g. from the document's creation
    /// entry lying after the index's position).
    pub fn add_new(&self, d: &IndexedDoc) -> Result<(), FulltextError> {
        let w = self.writer()?;
        self.add(&w, d)
    }

    fn add(&self, w: &IndexWriter, d: &IndexedDoc) -> Result<(), FulltextError> {
        let f = self.fields;
        let id = d.id.hyphenated().to_string();
        let (hi, lo) = d.id.as_u64_pair();
        let mut doc = doc!(
            f.id => id,
            f.id_hi => hi,
            f.id_lo => lo,
            f.title => d.title.as_str(),
            f.body => d.body.as_str(),
            f.exact => d.title.as_str(),
            f.exact => d.body.as_str(),
            f.created => d.created,
        );
        for a in &d.above {
            doc.add_text(f.above, a.hyphenated().to_string());
        }
        if let Some(n) = &d.note {
            doc.add_text(f.note, n);
        }
        w.add_document(doc)?;
        Ok(())
    }

    /// Removes the document `id`.
    pub fn remove(&self, id: Uuid) -> Result<(), FulltextError> {
        let w = self.writer()?;
        w.delete_term(Term::from_field_text(
            self.fields.id,
            &id.hyphenated().to_string(),
        ));
        Ok(())
    }

    /// Makes the changes so far durable as the index of the journal before `position`,
    /// and visible to searches.
    pub fn commit(&self, position: u64) -> Result<(), FulltextError> {
        {
            let mut w = self.writer()?;
            let mut prepared = w.prepare_commit()?;
            let payload = serde_json::to_string(&Payload {
                layout: LAYOUT,
                position,
            })
            .map_err(|e| FulltextError::Layout(e.to_string()))?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Documents indexed below the object `above` (by their stored parent chain).
    pub fn below(&self, above: Uuid) -> Result<Vec<Uuid>, FulltextError> {
        let q = TermQuery::new(
            Term::from_field_text(self.fields.above, &above.hyphenated().to_string()),
            IndexRecordOption::Basic,
        );
        self.ids_of(&q)
    }

    /// Every document id in the index (verification).
    pub fn all_ids(&self) -> Result<Vec<Uuid>, FulltextError> {
        self.ids_of(&tantivy::query::AllQuery)
    }

    fn ids_of(&self, q: &dyn Query) -> Result<Vec<Uuid>, FulltextError> {
        let searcher = self.reader.searcher();
        let docs = searcher.search(q, &tantivy::collector::DocSetCollector)?;
        let mut out = Vec::with_capacity(docs.len());
        for addr in docs {
            let d: TantivyDocument = searcher.doc(addr)?;
            if let Some(id) = self.id_of(&d) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn id_of(&self, d: &TantivyDocument) -> Option<Uuid> {
        d.get_first(self.fields.id)
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
    }

    /// The extraction note stored for `id`, if the document is indexed and has one.
    pub fn note_of(&self, id: Uuid) -> Result<Option<String>, FulltextError> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.fields.id, &id.hyphenated().to_string()),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&q, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, addr)) = top.first() else {
            return Ok(None);
        };
        let d: TantivyDocument = searcher.doc(*addr)?;
        Ok(d.get_first(self.fields.note)
            .and_then(|v| v.as_str())
            .map(str::to_owned))
    }

    /// The best [`MAX_HITS`] matches of `text` in `order` (all of them would not be paged
    /// through by anyone; the bound keeps a search's cost bounded).
    pub fn search(&self, text: &str, order: Ranking) -> Result<Vec<Hit>, FulltextError> {
        let q = parse(text, &self.fields)?;
        self.search_parsed(&q, order)
    }

    fn search_parsed(&self, q: &TextQuery, order: Ranking) -> Result<Vec<Hit>, FulltextError> {
        let searcher = self.reader.searcher();
        let addrs: Vec<(f32, tantivy::DocAddress)> = match order {
            Ranking::Relevance => {
                searcher.search(q.query(), &TopDocs::with_limit(MAX_HITS).order_by_score())?
            }
            Ranking::NewestFirst | Ranking::OldestFirst => {
                let o = if order == Ranking::NewestFirst {
                    Order::Desc
                } else {
                    Order::Asc
                };
                let top: Vec<(Option<i64>, tantivy::DocAddress)> = searcher.search(
                    q.query(),
                    &TopDocs::with_limit(MAX_HITS).order_by_fast_field::<i64>("created", o),
                )?;
                top.into_iter().map(|(_, a)| (0.0, a)).collect()
            }
        };
        let mut columns = Vec::with_capacity(searcher.segment_readers().len());
        for r in searcher.segment_readers() {
            let ff = r.fast_fields();
            columns.push((ff.u64("id_hi")?, ff.u64("id_lo")?));
        }
        let mut out = Vec::with_capacity(addrs.len());
        for (score, addr) in addrs {
            let Some((hi, lo)) = columns.get(addr.segment_ord as usize) else {
                continue;
            };
            if let (Some(hi), Some(lo)) = (hi.first(addr.doc_id), lo.first(addr.doc_id)) {
                out.push(Hit {
                    id: Uuid::from_u64_pair(hi, lo),
                    score,
                });
            }
        }
        Ok(out)
    }

    /// Highlighted snippets of `id`'s text for `text`: passages with the matched words
    /// in `<b>`…`</b>`, the rest HTML-escaped; the start of the text when no word of the
    /// query is in it as such (a prefix query), empty when it has no text.
    pub fn snippets(&self, text: &str, ids: &[Uuid]) -> Result<Vec<Vec<String>>, FulltextError> {
        let q = parse(text, &self.fields)?;
        let searcher = self.reader.searcher();
        let mut body = SnippetGenerator::create(&searcher, q.query(), self.fields.body)?;
        body.set_max_num_chars(SNIPPET_CHARS);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let tq = TermQuery::new(
                Term::from_field_text(self.fields.id, &id.hyphenated().to_string()),
                IndexRecordOption::Basic,
            );
            let top = searcher.search(&tq, &TopDocs::with_limit(1).order_by_score())?;
            let Some((_, addr)) = top.first() else {
                out.push(Vec::new());
                continue;
            };
            let d: TantivyDocument = searcher.doc(*addr)?;
            let snippet = body.snippet_from_doc(&d);
            let s = if snippet.highlighted().is_empty() {
                let text = d
                    .get_first(self.fields.body)
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let start: String = text.chars().take(SNIPPET_CHARS).collect();
                html_escape(&start)
            } else {
                snippet.to_html()
            };
            out.push(if s.is_empty() { Vec::new() } else { vec![s] });
        }
        Ok(out)
    }

    /// Number of indexed documents.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Moves a damaged index out of the way, keeping the last one for inspection.
fn set_aside(dir: &Path) -> Result<(), FulltextError> {
    let mut aside = dir.as_os_str().to_owned();
    aside.push(".aside");
    let aside = PathBuf::from(aside);
    if aside.exists() {
        std::fs::remove_dir_all(&aside).map_err(|e| FulltextError::io(&aside, e))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &aside).map_err(|e| FulltextError::io(dir, e))?;
    }
    Ok(())
}

/// Removes the index in `dir` (a rebuild starts from position 0).
pub fn remove(dir: &Path) -> Result<(), FulltextError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| FulltextError::io(dir, e))?;
    }
    Ok(())
}
