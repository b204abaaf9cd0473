//! Full-text search (issue 18): extraction, indexing rate and query latency at 10^5
//! documents (10^4 with `--quick`), each beside plain tantivy doing the same in the same
//! run, and the rate of acknowledged writes with and without the indexer following.
//!
//! Texts: the corpus of `../shared/corpus/gen_corpus.py` is extracted as akte extracts
//! it. Its "PDF" files are PDF-shaped (a header and streams, no page tree), so a real
//! PDF extractor finds no text in them; their text streams are the generator's prose,
//! which the benchmark reads raw into the pool of sentences, beside the text extracted
//! from the XML records. The indexed documents are drawn from that pool: a subject of 3
//! to 6 words and a body of sentences up to a length between 1 and 12 KB (median about
//! 3 KB, a letter or a form), deterministic by their number. Indexing the corpus files
//! themselves 10^5 times over would measure the same text again, not a tenant.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use sha2::{Digest as _, Sha256};

use akte_core::records::{NewDocument, NewRendition, NewVersion, Records};
use akte_core::store::StoreOptions;
use akte_fulltext::extract;
use akte_fulltext::index::{IndexedDoc, Ranking, TextIndex};
use akte_fulltext::tantivy;

use crate::{bench_dir, Row};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The raw `/Type /Text` streams of a PDF-shaped corpus file.
fn text_streams(pdf: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pdf;
    while let Some(i) = find(rest, b"/Type /Text") {
        rest = &rest[i..];
        let Some(s) = find(rest, b"stream\n") else {
            break;
        };
        let body = &rest[s + 7..];
        let Some(e) = find(body, b"\nendstream") else {
            break;
        };
        out.push(String::from_utf8_lossy(&body[..e]).into_owned());
        rest = &body[e..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Document `i` of the benchmark, from the sentence pool.
fn document(pool: &[String], i: u64) -> IndexedDoc {
    let mut rng = Rng::new(i + 1);
    let words: Vec<&str> = pool[rng.below(pool.len())].split_whitespace().collect();
    let n = 3 + rng.below(4);
    let start = rng.below(words.len().saturating_sub(n).max(1));
    let title = words
        .iter()
        .skip(start)
        .take(n)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    // 1 to 12 KB, skewed small: the smaller of two draws.
    let target = 1024 + rng.below(11 * 1024).min(rng.below(11 * 1024));
    let mut body = String::with_capacity(target + 256);
    while body.len() < target {
        body.push_str(&pool[rng.below(pool.len())]);
        body.push('\n');
    }
    IndexedDoc {
        id: uuid::Uuid::from_u64_pair(0xA4, i),
        above: vec![uuid::Uuid::from_u64_pair(0xF1, i / 10)],
        title,
        body,
        created: i as i64,
        note: None,
    }
}

fn media_of(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("pdf") => "application/pdf",
        Some("xml") => "application/xml",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// A one-page PDF showing `text` line by line (Helvetica, WinAnsiEncoding; characters
/// beyond Latin-1 become `?`), with a correct cross-reference table.
fn pdf_of(text: &str) -> Vec<u8> {
    let mut stream = b"BT /F1 10 Tf 12 TL 40 800 Td\n".to_vec();
    for line in text.lines() {
        stream.push(b'(');
        for c in line.chars() {
            match c {
                '(' | ')' | '\\' => {
                    stream.push(b'\\');
                    stream.push(c as u8);
                }
                c if (c as u32) < 256 => stream.push(c as u32 as u8),
                _ => stream.push(b'?'),
            }
        }
        stream.extend_from_slice(b") Tj T*\n");
    }
    stream.extend_from_slice(b"ET");
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_vec(),
        [format!("<< /Length {} >>\nstream\n", stream.len()).into_bytes(), stream, b"\nendstream".to_vec()].concat(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Extraction rates: real PDFs made of the corpus's text (the corpus's own are
/// PDF-shaped only), and the corpus's XML records; MB/s of input beside SHA-256 of it.
fn extraction_rows(rows: &mut Vec<Row>, quick: bool, pool: &[String], xml: &[&[u8]]) -> Result<()> {
    let n = if quick { 200 } else { 1000 };
    let pdfs: Vec<Vec<u8>> = (0..n)
        .map(|i| pdf_of(&document(pool, 1_000_000 + i).body))
        .collect();
    for (label, inputs, media) in [
        (
            format!("{n} PDFs of corpus text"),
            pdfs.iter().map(Vec::as_slice).collect::<Vec<_>>(),
            "application/pdf",
        ),
        (
            format!("{} corpus XML records", xml.len()),
            xml.to_vec(),
            "application/xml",
        ),
    ] {
        let bytes: usize = inputs.iter().map(|b| b.len()).sum();
        let start = Instant::now();
        let (mut text, mut failed) = (0usize, 0usize);
        for b in &inputs {
            let e = extract::extract(b, media);
            text += e.text.len();
            failed += usize::from(e.text.is_empty());
        }
        let secs = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for b in &inputs {
            std::hint::black_box(Sha256::digest(b));
        }
        let hash = start.elapsed().as_secs_f64();
        rows.push(Row {
            figure: format!(
                "extraction, {label} ({:.1} MB in, {:.1} MB text, {failed} without text)",
                bytes as f64 / 1e6,
                text as f64 / 1e6
            ),
            value: bytes as f64 / 1e6 / secs,
            unit: "MB/s",
            baseline: "SHA-256 of the same bytes".into(),
            baseline_value: bytes as f64 / 1e6 / hash,
        });
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k.min(sorted.len() - 1)]
}

pub(crate) fn bench_fulltext(rows: &mut Vec<Row>, quick: bool) -> Result<()> {
    let dir = tempfile::tempdir_in(bench_dir())?;
    let files = crate::grpc::corpus(dir.path(), quick)?;

    // The corpus as filed: what akte extracts from it (the PDF-shaped files have no page
    // tree, so no text; scans have none).
    let mut with_text = 0usize;
    let mut pool: Vec<String> = Vec::new();
    let mut xml: Vec<&[u8]> = Vec::new();
    for (name, bytes) in &files {
        let media = media_of(name);
        let e = extract::extract(bytes, media);
        if !e.text.is_empty() {
            with_text += 1;
            pool.extend(e.text.lines().map(str::to_owned));
        }
        if media == "application/xml" {
            xml.push(bytes);
        }
    }
    println!(
        "fulltext: the corpus as filed: {with_text} of {} files give text (its PDF-shaped files have no page tree)",
        files.len()
    );
    for (name, bytes) in &files {
        if name.ends_with(".pdf") {
            for s in text_streams(bytes) {
                pool.extend(
                    s.split(".\n")
                        .flat_map(|l| l.split(". "))
                        .filter(|l| l.len() > 20)
                        .map(|l| l.chars().take(400).collect::<String>()),
                );
            }
        }
    }
    pool.retain(|l| l.split_whitespace().count() >= 3);
    pool.truncate(200_000);
    anyhow::ensure!(!pool.is_empty(), "the corpus gave no text");
    extraction_rows(rows, quick, &pool, &xml)?;

    let n: u64 = if quick { 10_000 } else { 100_000 };
    let commit_every = 20_000;

    // akte's index: German analyzer, folding, stored body for snippets, id columns.
    let akte_dir = dir.path().join("akte-fulltext");
    let akte = TextIndex::open(&akte_dir)?;
    let mut bytes = 0u64;
    let start = Instant::now();
    for i in 0..n {
        let d = document(&pool, i);
        bytes += (d.title.len() + d.body.len()) as u64;
        akte.put(&d)?;
        if (i + 1) % commit_every == 0 {
            akte.commit(i + 1)?;
        }
    }
    akte.commit(n)?;
    let akte_s = start.elapsed().as_secs_f64();

    // Plain tantivy: default tokenizer, the same fields stored, the same commits.
    use tantivy::schema::{Schema, STORED, STRING, TEXT};
    let mut sb = Schema::builder();
    let f_id = sb.add_text_field("id", STRING | STORED);
    let f_title = sb.add_text_field("title", TEXT | STORED);
    let f_body = sb.add_text_field("body", TEXT | STORED);
    let plain_dir = dir.path().join("plain");
    std::fs::create_dir_all(&plain_dir)?;
    let plain = tantivy::Index::create_in_dir(&plain_dir, sb.build())?;
    let mut w: tantivy::IndexWriter = plain.writer_with_num_threads(1, 64 * 1024 * 1024)?;
    let start = Instant::now();
    for i in 0..n {
        let d = document(&pool, i);
        let mut doc = tantivy::TantivyDocument::default();
        doc.add_text(f_id, d.id.to_string());
        doc.add_text(f_title, &d.title);
        doc.add_text(f_body, &d.body);
        w.add_document(doc)?;
        if (i + 1) % commit_every == 0 {
            w.commit()?;
        }
    }
    w.commit()?;
    let plain_s = start.elapsed().as_secs_f64();
    rows.push(Row {
        figure: format!(
            "full-text indexing, {n} docs, {:.0} MB text",
            bytes as f64 / 1e6
        ),
        value: bytes as f64 / 1e6 / akte_s,
        unit: "MB/s",
        baseline: "plain tantivy, default tokenizer".into(),
        baseline_value: bytes as f64 / 1e6 / plain_s,
    });

    // Queries: words of the pool (frequent and rare), two words, phrases, prefixes.
    let mut rng = Rng::new(77);
    let mut queries = Vec::new();
    let nq = if quick { 300 } else { 1000 };
    while queries.len() < nq {
        let line: Vec<&str> = pool[rng.below(pool.len())]
            .split_whitespace()
            .filter(|w| w.chars().all(char::is_alphanumeric) && w.chars().count() >= 3)
            .collect();
        if line.len() < 3 {
            continue;
        }
        let k = rng.below(line.len() - 1);
        let q = match queries.len() % 5 {
            0 | 1 => line[k].to_owned(),
            2 => format!("{} {}", line[k], line[rng.below(line.len())]),
            3 => format!("\"{} {}\"", line[k], line[k + 1]),
            _ => format!("{}*", line[k].chars().take(4).collect::<String>()),
        };
        queries.push(q);
    }
    // akte: the ranked hits (up to 10,000) and the snippets of a first page of 10.
    let mut akte_ms = Vec::with_capacity(nq);
    let mut hits_total = 0usize;
    for q in &queries {
        let t = Instant::now();
        let hits = akte.search(q, Ranking::Relevance)?;
        let ids: Vec<uuid::Uuid> = hits.iter().take(10).map(|h| h.id).collect();
        std::hint::black_box(akte.snippets(q, &ids)?);
        akte_ms.push(t.elapsed().as_secs_f64() * 1e3);
        hits_total += hits.len();
    }
    // Plain tantivy: the query parser over title and body, the top 10 and their snippets.
    let reader = plain.reader()?;
    let searcher = reader.searcher();
    let parser = tantivy::query::QueryParser::for_index(&plain, vec![f_title, f_body]);
    let mut plain_ms = Vec::with_capacity(nq);
    for q in &queries {
        let t = Instant::now();
        let query: Box<dyn tantivy::query::Query> = match q.strip_suffix('*') {
            Some(p) => Box::new(tantivy::query::RegexQuery::from_pattern(
                &format!("{}.*", p.to_lowercase()),
                f_body,
            )?),
            None => parser.parse_query(q).context("plain query")?,
        };
        let top = searcher.search(
            &query,
            &tantivy::collector::TopDocs::with_limit(10).order_by_score(),
        )?;
        let gen = tantivy::snippet::SnippetGenerator::create(&searcher, &*query, f_body)?;
        for (_, a) in top {
            let d: tantivy::TantivyDocument = searcher.doc(a)?;
            std::hint::black_box(gen.snippet_from_doc(&d).to_html());
        }
        plain_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    akte_ms.sort_by(f64::total_cmp);
    plain_ms.sort_by(f64::total_cmp);
    for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
        rows.push(Row {
            figure: format!(
                "full-text query {label}, {n} docs ({nq} queries, {:.0} hits avg)",
                hits_total as f64 / nq as f64
            ),
            value: percentile(&akte_ms, p),
            unit: "ms",
            baseline: "plain tantivy, top 10 + snippets".into(),
            baseline_value: percentile(&plain_ms, p),
        });
    }
    drop(akte);
    writes_beside_indexer(rows, quick, &pool)
}

/// Acknowledged writes (a text document: create and version) from 8 threads, with and
/// without the indexer following the journal in the background.
fn writes_beside_indexer(rows: &mut Vec<Row>, quick: bool, pool: &[String]) -> Result<()> {
    let docs: u64 = if quick { 800 } else { 3000 };
    let mut rates = Vec::new();
    let mut caught_up = 0.0;
    for with_indexer in [false, true] {
        let dir = tempfile::tempdir_in(bench_dir())?;
        let records = Records::open(
            akte_core::embedded::open(&dir.path().join("data"))?,
            StoreOptions::default(),
        )?;
        let t = records.create_tenant("amt")?;
        let file = crate::sample_file(&t)?;
        let fulltext = if with_indexer {
            Some(akte_fulltext::Fulltext::start(
                records.clone(),
                dir.path().join("fulltext"),
            )?)
        } else {
            None
        };
        let pool = Arc::new(pool.to_vec());
        let start = Instant::now();
        let writers = 8u64;
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (t, pool) = (t.clone(), pool.clone());
                let parent = file.id;
                std::thread::spawn(move || -> Result<()> {
                    for i in (w..docs).step_by(writers as usize) {
                        let d = document(&pool, i);
                        let doc = t.create_document(
                            "bench",
                            NewDocument {
                                parent,
                                subject: d.title.clone(),
                                ..NewDocument::default()
                            },
                            None,
                        )?;
                        let put = t.put_content(d.body.as_bytes())?;
                        t.add_version(
                            "bench",
                            doc.id,
                            NewVersion {
                                comment: String::new(),
                                renditions: vec![NewRendition {
                                    file_name: "brief.txt".into(),
                                    media_type: "text/plain".into(),
                                    sha256: put.digest,
                                    size: put.size,
                                }],
                            },
                            None,
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        let secs = start.elapsed().as_secs_f64();
        rates.push(docs as f64 / secs);
        if let Some(ft) = &fulltext {
            let size = t.tenant().size()?;
            anyhow::ensure!(
                ft.wait_for("amt", size, std::time::Duration::from_secs(600)),
                "the indexer did not catch up within 10 minutes"
            );
            caught_up = start.elapsed().as_secs_f64() - secs;
        }
    }
    rows.push(Row {
        figure: format!(
            "text docs written (create + version), 8 threads, indexer following ({docs}; caught up {caught_up:.1} s after the last)"
        ),
        value: rates[1],
        unit: "docs/s",
        baseline: "the same without the indexer".into(),
        baseline_value: rates[0],
    });
    Ok(())
}
