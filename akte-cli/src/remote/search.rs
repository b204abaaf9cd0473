//! `akte search`: metadata and full-text search (SearchService), one page at a time.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};

use akte_api::client::Clients;
use akte_api::pb::akte::v1 as pb;

use super::Ctx;

/// Order of the results.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Order {
    /// Best match first (with --text).
    Relevance,
    /// Newest creation date first.
    Newest,
    /// Oldest creation date first.
    Oldest,
}

/// Arguments of `akte search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Full-text query over the subject and content of documents: words (any inflection;
    /// Müller, Mueller and Muller alike), "phrases" and prefixes (verwalt*).
    #[arg(long)]
    text: Option<String>,
    /// Words that must all be in the subject or title.
    #[arg(long)]
    subject: Option<String>,
    /// Only objects led by this unit or one below it (id or full name).
    #[arg(long)]
    org_unit: Option<String>,
    /// Order of the results [default: relevance with --text, index order without].
    #[arg(long, value_enum)]
    order: Option<Order>,
    /// Results per page.
    #[arg(long, default_value_t = 20)]
    page_size: i32,
    /// The next page of an earlier search (its next_page_token).
    #[arg(long, default_value = "")]
    page_token: String,
    /// When nothing is found, ask again for up to this many seconds: the full-text index
    /// follows the journal in the background, so a document filed a moment ago may not
    /// be found yet.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait: u64,
}

/// Runs a search and prints the page: name, score and subject, and the snippets
/// (matched words in <b>…</b>).
pub(super) async fn search(ctx: &Ctx<'_>, c: &mut Clients, a: &SearchArgs) -> Result<()> {
    let req = pb::SearchRequest {
        parent: ctx.tenant_name()?,
        text: a.text.clone().unwrap_or_default(),
        subject_words: a.subject.clone().unwrap_or_default(),
        org_unit: match &a.org_unit {
            Some(u) => ctx.name(u, "orgUnits")?,
            None => String::new(),
        },
        order: match a.order {
            None => pb::SearchOrder::Unspecified,
            Some(Order::Relevance) => pb::SearchOrder::Relevance,
            Some(Order::Newest) => pb::SearchOrder::NewestFirst,
            Some(Order::Oldest) => pb::SearchOrder::OldestFirst,
        } as i32,
        page_size: a.page_size,
        page_token: a.page_token.clone(),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let response = loop {
        let r = c.search.search(req.clone()).await?.into_inner();
        if !r.results.is_empty() || Instant::now() >= deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ctx.list(
        &response,
        &response.results,
        |r| {
            use pb::search_result::Object as O;
            let (name, subject) = match &r.object {
                Some(O::PlanUnit(u)) => (u.name.as_str(), u.title.as_str()),
                Some(O::File(f)) => (f.name.as_str(), f.subject.as_str()),
                Some(O::Case(c)) => (c.name.as_str(), c.subject.as_str()),
                Some(O::Document(d)) => (d.name.as_str(), d.subject.as_str()),
                None => ("?", ""),
            };
            let mut line = if r.score > 0.0 {
                format!("{name}\t{:.2}\t{subject}", r.score)
            } else {
                format!("{name}\t{subject}")
            };
            for s in &r.snippets {
                line.push_str(&format!("\n\t{}", s.replace('\n', " ")));
            }
            line
        },
        "nothing found",
    )?;
    if !ctx.json && !response.next_page_token.is_empty() {
        println!("next page: --page-token {}", response.next_page_token);
    }
    Ok(())
}
