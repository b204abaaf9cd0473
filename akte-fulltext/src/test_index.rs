//! The index on its own: stemming, folding, phrases, prefixes, order, snippets,
//! replacement and removal, the recorded position, and a damaged index set aside.

use uuid::Uuid;

use crate::index::{IndexedDoc, Ranking, TextIndex};

fn doc(n: u128, title: &str, body: &str, created: i64) -> IndexedDoc {
    IndexedDoc {
        id: Uuid::from_u128(n),
        above: vec![Uuid::from_u128(1000 + n % 2)],
        title: title.into(),
        body: body.into(),
        created,
        note: None,
    }
}

fn ids(i: &TextIndex, q: &str) -> Vec<u128> {
    let mut v: Vec<u128> = i
        .search(q, Ranking::Relevance)
        .unwrap()
        .into_iter()
        .map(|h| h.id.as_u128())
        .collect();
    v.sort();
    v
}

fn sample() -> (tempfile::TempDir, TextIndex) {
    let dir = tempfile::tempdir().unwrap();
    let i = TextIndex::open(&dir.path().join("ft")).unwrap();
    i.put(&doc(
        1,
        "Bauantrag",
        "Antrag von Frau Müller auf Genehmigung eines Anbaus an das Gebäude.",
        100,
    ))
    .unwrap();
    i.put(&doc(
        2,
        "Widerspruch",
        "Herr Mueller widerspricht dem Gebührenbescheid der Verwaltung.",
        200,
    ))
    .unwrap();
    i.put(&doc(
        3,
        "Anhörung",
        "Die Anhörung von Herrn Muller zur Verwaltungsgebühr ist erfolgt.",
        300,
    ))
    .unwrap();
    i.put(&doc(
        4,
        "Genehmigungen",
        "Sammlung erteilter Genehmigungen für Gebäude im Ortsteil.",
        400,
    ))
    .unwrap();
    i.commit(7).unwrap();
    (dir, i)
}

#[test]
fn umlaut_spellings_find_each_other() {
    let (_d, i) = sample();
    for q in ["Müller", "Mueller", "Muller", "MÜLLER"] {
        assert_eq!(ids(&i, q), vec![1, 2, 3], "{q}");
    }
    assert_eq!(ids(&i, "Gebuehrenbescheid"), vec![2]);
}

#[test]
fn stemming_finds_inflections_in_title_and_body() {
    let (_d, i) = sample();
    // Genehmigung / Genehmigungen, Gebäude / Gebäudes.
    assert_eq!(ids(&i, "Genehmigung"), vec![1, 4]);
    assert_eq!(ids(&i, "Gebäudes"), vec![1, 4]);
    // All words must occur.
    assert_eq!(ids(&i, "Genehmigung Müller"), vec![1]);
    assert!(ids(&i, "Genehmigung Widerspruch").is_empty());
}

#[test]
fn phrases_keep_word_order() {
    let (_d, i) = sample();
    assert_eq!(ids(&i, "\"Frau Müller\""), vec![1]);
    assert!(ids(&i, "\"Müller Frau\"").is_empty());
    assert_eq!(ids(&i, "\"dem Gebührenbescheid\""), vec![2]);
}

#[test]
fn prefixes_match_word_starts() {
    let (_d, i) = sample();
    assert_eq!(ids(&i, "verwalt*"), vec![2, 3]);
    assert_eq!(ids(&i, "Verwaltungsgeb*"), vec![3]);
    assert_eq!(ids(&i, "müll*"), vec![1, 2, 3]);
    assert!(i.search("v*", Ranking::Relevance).is_err());
    assert!(i.search("  \"\" ", Ranking::Relevance).is_err());
}

#[test]
fn relevance_and_date_order() {
    let (_d, i) = sample();
    // The title match weighs more.
    let hits = i.search("Genehmigungen", Ranking::Relevance).unwrap();
    assert_eq!(hits[0].id.as_u128(), 4);
    assert!(hits[0].score >= hits[1].score);
    let newest: Vec<u128> = i
        .search("Müller", Ranking::NewestFirst)
        .unwrap()
        .iter()
        .map(|h| h.id.as_u128())
        .collect();
    assert_eq!(newest, vec![3, 2, 1]);
    let oldest: Vec<u128> = i
        .search("Müller", Ranking::OldestFirst)
        .unwrap()
        .iter()
        .map(|h| h.id.as_u128())
        .collect();
    assert_eq!(oldest, vec![1, 2, 3]);
}

#[test]
fn snippets_highlight_matches() {
    let (_d, i) = sample();
    let s = i
        .snippets(
            "Gebührenbescheid",
            &[Uuid::from_u128(2), Uuid::from_u128(99)],
        )
        .unwrap();
    assert_eq!(s.len(), 2);
    assert!(s[0][0].contains("<b>Gebührenbescheid</b>"), "{s:?}");
    assert!(s[1].is_empty());
    // A prefix shows the start of the text, escaped.
    let s = i
        .snippets("verwaltungsgeb*", &[Uuid::from_u128(3)])
        .unwrap();
    assert!(s[0][0].starts_with("Die Anhörung"), "{s:?}");
}

#[test]
fn replace_remove_and_position_survive_reopening() {
    let (d, i) = sample();
    i.put(&doc(1, "Bauantrag", "Neue Fassung ohne den Namen.", 100))
        .unwrap();
    i.remove(Uuid::from_u128(2)).unwrap();
    i.commit(9).unwrap();
    assert_eq!(ids(&i, "Müller"), vec![3]);
    assert_eq!(ids(&i, "Fassung"), vec![1]);
    let mut below = i.below(Uuid::from_u128(1001)).unwrap();
    below.sort();
    assert_eq!(below, vec![Uuid::from_u128(1), Uuid::from_u128(3)]);
    drop(i);
    let i = TextIndex::open(&d.path().join("ft")).unwrap();
    assert_eq!(i.position().unwrap(), 9);
    assert_eq!(i.len(), 3);
    let ro = TextIndex::open_read_only(&d.path().join("ft"))
        .unwrap()
        .unwrap();
    assert_eq!(ro.all_ids().unwrap().len(), 3);
    assert!(ro.remove(Uuid::from_u128(1)).is_err());
}

#[test]
fn a_damaged_index_is_set_aside_and_rebuilt_empty() {
    let (d, i) = sample();
    drop(i);
    let dir = d.path().join("ft");
    std::fs::write(dir.join("meta.json"), b"{ not json").unwrap();
    let i = TextIndex::open(&dir).unwrap();
    assert_eq!(i.position().unwrap(), 0);
    assert!(i.is_empty());
    assert!(d.path().join("ft.aside").join("meta.json").is_file());
}
