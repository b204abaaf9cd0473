//! Reads of the records model: get, list with pagination, history, versions and queries.
//! Reads go straight to the index (its own read transactions) and never wait for writers.

use std::collections::BTreeMap;
use std::ops::Bound;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::index::TenantIndex;

use super::projection::load_object;
use super::schema::{self, tag, KeyExt};
use super::service::{as_case, as_document, as_file, as_plan_unit, get_object};
use super::types::*;
use super::{RecordsError, TenantRecords};

/// Default number of items per page.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Most index keys one query page may examine before returning what it has (with a token
/// to go on), so that a query matching little never turns into one unbounded scan.
pub const MAX_SCAN_PER_PAGE: usize = 20_000;

/// A metadata query. All given criteria must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only objects of this kind.
    pub kind: Option<ObjectKind>,
    /// Files whose reference starts with this.
    pub reference_prefix: Option<String>,
    /// Words that must all occur in the subject or title (case-insensitive).
    pub subject_words: Vec<String>,
    /// Open or closed (files and cases).
    pub status: Option<Status>,
    /// Created on or after.
    pub created_from: Option<NaiveDate>,
    /// Created on or before.
    pub created_to: Option<NaiveDate>,
    /// Closed on or after (files and cases).
    pub closed_from: Option<NaiveDate>,
    /// Closed on or before.
    pub closed_to: Option<NaiveDate>,
    /// Documents whose sender (Absender) contains this (case-insensitive).
    pub sender: Option<String>,
    /// Documents with a recipient (Empfänger) containing this (case-insensitive).
    pub recipient: Option<String>,
    /// Documents whose clerk (Bearbeiter) contains this (case-insensitive).
    pub clerk: Option<String>,
    /// Documents whose external reference (Fremdes Geschäftszeichen) contains this
    /// (case-insensitive).
    pub external_reference: Option<String>,
    /// Custom field criteria (`records::fields`): equality, or a range for numbers and
    /// dates. Only files, cases and documents with the values match.
    pub custom_fields: Vec<super::fields::FieldFilter>,
    /// Files, cases and documents whose lead unit (own or inherited) is this unit or
    /// one below it.
    pub org_unit: Option<Uuid>,
    /// Files, cases and documents at exactly this effective confidentiality level.
    pub confidentiality: Option<Confidentiality>,
}

/// Most matches a query ordered by date collects (it must see every match before it can
/// order them), in at most [`MAX_DATE_ORDER_ROUNDS`] rounds of [`MAX_SCAN_PER_PAGE`] keys;
/// a query matching more is refused, to be narrowed.
pub const MAX_DATE_ORDER_MATCHES: usize = 100_000;
/// See [`MAX_DATE_ORDER_MATCHES`].
pub const MAX_DATE_ORDER_ROUNDS: usize = 100;

impl Query {
    /// Whether the query names a document field (then only documents match).
    fn wants_document_fields(&self) -> bool {
        self.sender.is_some()
            || self.recipient.is_some()
            || self.clerk.is_some()
            || self.external_reference.is_some()
    }
}

/// Case-insensitive "contains".
fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn page_size(p: &PageRequest) -> Result<usize, RecordsError> {
    match p.page_size {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n <= MAX_PAGE_SIZE => Ok(n as usize),
        n => Err(RecordsError::Invalid {
            field: "page_size".into(),
            reason: format!("{n}; at most {MAX_PAGE_SIZE}"),
        }),
    }
}

fn bad_token() -> RecordsError {
    RecordsError::Invalid {
        field: "page_token".into(),
        reason: "not a page token of this listing".into(),
    }
}

/// What a page scan makes of one key.
pub(super) enum Scanned<T> {
    /// An item of the page.
    Item(T),
    /// Not part of the listing (another kind, not matching a query).
    Skip,
    /// An object the caller may not see: a page never ends on it, so that no page token
    /// carries its key.
    Hidden,
}

/// Pages through the keys under `prefix`, mapping each to an item (or skipping it).
pub(super) fn scan_page<T>(
    index: &TenantIndex,
    listing: &[u8],
    prefix: &[u8],
    page: &PageRequest,
    max_scan: usize,
    mut map: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, RecordsError>,
) -> Result<Page<T>, RecordsError> {
    scan_page_marked(index, listing, prefix, page, max_scan, |k, v| {
        Ok(map(k, v)?.map_or(Scanned::Skip, Scanned::Item))
    })
}

/// As [`scan_page`], with keys of hidden objects told apart: a page that reaches
/// `max_scan` goes on past them to the next key that is not hidden, so its token resumes
/// after a key the caller may know.
pub(super) fn scan_page_marked<T>(
    index: &TenantIndex,
    listing: &[u8],
    prefix: &[u8],
    page: &PageRequest,
    max_scan: usize,
    map: impl FnMut(&[u8], &[u8]) -> Result<Scanned<T>, RecordsError>,
) -> Result<Page<T>, RecordsError> {
    scan_page_marked_from(index, listing, prefix, None, page, max_scan, map)
}

/// As [`scan_page_marked`], the first page starting at `first` (a key under `prefix`)
/// instead of the prefix itself: a range within the listing.
pub(super) fn scan_page_marked_from<T>(
    index: &TenantIndex,
    listing: &[u8],
    prefix: &[u8],
    first: Option<Vec<u8>>,
    page: &PageRequest,
    max_scan: usize,
    map: impl FnMut(&[u8], &[u8]) -> Result<Scanned<T>, RecordsError>,
) -> Result<Page<T>, RecordsError> {
    let size = page_size(page)?;
    let start = if page.page_token.is_empty() {
        Bound::Included(first.unwrap_or_else(|| prefix.to_vec()))
    } else {
        let last = schema::decode_token(listing, &page.page_token).ok_or_else(bad_token)?;
        if !last.starts_with(prefix) {
            return Err(bad_token());
        }
        Bound::Excluded(last)
    };
    page_from(
        index.range((start, Bound::Unbounded)),
        listing,
        prefix,
        size,
        max_scan,
        map,
    )
}

/// The page of `size` items (or `max_scan` keys) from the keys `kvs`, in order.
fn page_from<T>(
    kvs: impl Iterator<
        Item = Result<(crate::backend::Value, crate::backend::Value), crate::index::IndexError>,
    >,
    listing: &[u8],
    prefix: &[u8],
    size: usize,
    max_scan: usize,
    mut map: impl FnMut(&[u8], &[u8]) -> Result<Scanned<T>, RecordsError>,
) -> Result<Page<T>, RecordsError> {
    let mut items = Vec::new();
    let mut last_key: Option<Vec<u8>> = None;
    let mut last_hidden = false;
    for (scanned, kv) in kvs.enumerate() {
        let (k, v) = kv?;
        if !k.starts_with(prefix) {
            return Ok(Page {
                items,
                next_page_token: None,
            });
        }
        // A full page always ends right after its last item, which the caller sees.
        if items.len() == size || (scanned >= max_scan && !last_hidden) {
            // More keys follow: hand out a token that resumes after the last one read.
            let token = last_key.map(|l| schema::encode_token(listing, &l));
            return Ok(Page {
                items,
                next_page_token: token,
            });
        }
        last_hidden = false;
        match map(&k, &v)? {
            Scanned::Item(item) => items.push(item),
            Scanned::Skip => {}
            Scanned::Hidden => last_hidden = true,
        }
        last_key = Some(k.to_vec());
    }
    Ok(Page {
        items,
        next_page_token: None,
    })
}

fn object_at(index: &TenantIndex, key: &[u8]) -> Result<Option<Object>, RecordsError> {
    match schema::trailing_id(key) {
        Some(id) => Ok(load_object(index, id)?),
        None => Ok(None),
    }
}

impl TenantRecords {
    fn index(&self) -> &TenantIndex {
        self.tenant.index()
    }

    /// Any object by id.
    pub fn get(&self, id: Uuid) -> Result<Object, RecordsError> {
        self.admit(get_object(self.index(), id)?)
    }

    /// An object in a listing, if the bound caller may see it.
    fn listed(&self, obj: Option<Object>) -> Result<Option<Object>, RecordsError> {
        match obj {
            Some(o) if self.may_see(&o)? => Ok(Some(o)),
            _ => Ok(None),
        }
    }

    /// A plan unit by id.
    pub fn plan_unit(&self, id: Uuid) -> Result<PlanUnit, RecordsError> {
        as_plan_unit(self.get(id)?)
    }

    /// A file by id.
    pub fn file(&self, id: Uuid) -> Result<File, RecordsError> {
        as_file(self.get(id)?)
    }

    /// A case by id.
    pub fn case(&self, id: Uuid) -> Result<Case, RecordsError> {
        as_case(self.get(id)?)
    }

    /// A document by id.
    pub fn document(&self, id: Uuid) -> Result<Document, RecordsError> {
        as_document(self.get(id)?)
    }

    fn by_key(&self, key: Vec<u8>, what: &str, shown: &str) -> Result<Object, RecordsError> {
        let not_found = || RecordsError::NotFound {
            what: what.into(),
            id: shown.chars().take(100).collect(),
        };
        let v = self.index().get(key)?.ok_or_else(not_found)?;
        let id = Uuid::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))?;
        self.get(id)
    }

    /// A file by its reference (Aktenzeichen).
    pub fn file_by_reference(&self, reference: &str) -> Result<File, RecordsError> {
        as_file(self.by_key(
            schema::key(tag::REFERENCE).raw(reference.as_bytes()),
            "file with reference",
            reference,
        )?)
    }

    /// A plan unit by its code.
    pub fn plan_unit_by_code(&self, code: &str) -> Result<PlanUnit, RecordsError> {
        as_plan_unit(self.by_key(
            schema::key(tag::UNIT_CODE).raw(code.as_bytes()),
            "plan unit with code",
            code,
        )?)
    }

    /// Plan units under `parent` (the top level for `None`), in creation order.
    pub fn list_plan_units(
        &self,
        parent: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<PlanUnit>, RecordsError> {
        if let Some(p) = parent {
            self.plan_unit(p)?;
        }
        let prefix = schema::unit_children(parent);
        scan_page(self.index(), &prefix, &prefix, page, usize::MAX, |k, _| {
            object_at(self.index(), k)?.map(as_plan_unit).transpose()
        })
    }

    /// Files filed under a plan unit (sub-files included), in creation order.
    pub fn list_files(&self, unit: Uuid, page: &PageRequest) -> Result<Page<File>, RecordsError> {
        self.plan_unit(unit)?;
        let prefix = schema::unit_files(unit);
        scan_page(self.index(), &prefix, &prefix, page, usize::MAX, |k, _| {
            self.listed(object_at(self.index(), k)?)?
                .map(as_file)
                .transpose()
        })
    }

    /// Sub-files, cases and documents directly inside a file, case or document.
    pub fn list_children(
        &self,
        parent: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Object>, RecordsError> {
        self.list_children_of_kind(parent, None, page)
    }

    /// Children of one kind only (cases, documents or sub-files); pages are full, because
    /// the kind is filtered while scanning, not afterwards.
    pub fn list_children_of_kind(
        &self,
        parent: Uuid,
        kind: Option<ObjectKind>,
        page: &PageRequest,
    ) -> Result<Page<Object>, RecordsError> {
        let p = self.get(parent)?;
        if p.kind() == ObjectKind::PlanUnit {
            return Err(RecordsError::WrongKind {
                id: parent.to_string(),
                expected: "file, case or document (use list_files for plan units)".into(),
                found: ObjectKind::PlanUnit,
            });
        }
        let prefix = schema::children(parent);
        let wanted = kind.map(|k| match k {
            ObjectKind::File => b'f',
            ObjectKind::Case => b'c',
            ObjectKind::Document => b'd',
            ObjectKind::PlanUnit => b'p', // never a child of a file, case or document
        });
        scan_page(self.index(), &prefix, &prefix, page, usize::MAX, |k, v| {
            if wanted.is_some_and(|w| v.first() != Some(&w)) {
                return Ok(None);
            }
            self.listed(object_at(self.index(), k)?)
        })
    }

    /// All versions of a document, oldest first.
    pub fn versions(&self, document: Uuid) -> Result<Vec<Version>, RecordsError> {
        self.document(document)?;
        let mut out = Vec::new();
        for kv in self.index().scan_prefix(schema::versions(document)) {
            let (_, v) = kv?;
            out.push(
                serde_json::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// The versions of a document, oldest first, a page at a time.
    pub fn versions_page(
        &self,
        document: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Version>, RecordsError> {
        self.document(document)?;
        let prefix = schema::versions(document);
        scan_page(self.index(), &prefix, &prefix, page, usize::MAX, |_, v| {
            serde_json::from_slice(v)
                .map(Some)
                .map_err(|e| RecordsError::Internal(e.to_string()))
        })
    }

    /// One version of a document.
    pub fn version(&self, document: Uuid, number: u32) -> Result<Version, RecordsError> {
        self.document(document)?;
        let v = self
            .index()
            .get(schema::version(document, number))?
            .ok_or_else(|| RecordsError::NotFound {
                what: "version".into(),
                id: format!("{document}/{number}"),
            })?;
        serde_json::from_slice(&v).map_err(|e| RecordsError::Internal(e.to_string()))
    }

    /// The history of an object, oldest first: who changed which field when, from what to what.
    pub fn history(&self, id: Uuid, page: &PageRequest) -> Result<Page<HistoryItem>, RecordsError> {
        let prefix = schema::history(id);
        if self.bound().is_some() {
            // Objects in the access model show their history only to whoever may see them.
            if let Some(o) = load_object(self.index(), id)? {
                self.admit(o)?;
            }
        }
        if self.index().scan_prefix(&prefix).next().is_none() {
            return Err(RecordsError::NotFound {
                what: "object".into(),
                id: id.to_string(),
            });
        }
        scan_page(self.index(), &prefix, &prefix, page, usize::MAX, |_, v| {
            serde_json::from_slice(v)
                .map(Some)
                .map_err(|e| RecordsError::Internal(e.to_string()))
        })
    }

    /// Objects matching a query, in the order of the index used (reference, first subject
    /// word, or id). A page may hold fewer items than asked for while a token is returned:
    /// each page examines at most [`MAX_SCAN_PER_PAGE`] index keys.
    pub fn query(&self, q: &Query, page: &PageRequest) -> Result<Page<Object>, RecordsError> {
        let words = self.check_query(q)?;
        let filters = super::fields::resolve_filters(self.index(), &q.custom_fields)?;
        // The most selective index the query names: reference, a subject word, a custom
        // field's values, or every object.
        let by_field = q.reference_prefix.is_none() && words.is_empty() && !filters.is_empty();
        let (prefix, listing, first) = if let Some(r) = &q.reference_prefix {
            let p = schema::key(tag::REFERENCE).raw(r.as_bytes());
            (p.clone(), p, None)
        } else if let Some(w) = words.first() {
            let p = schema::word(w);
            (p.clone(), p, None)
        } else if let Some(f) = filters.first() {
            f.scan()
        } else {
            let p = schema::key(tag::OBJECT);
            (p.clone(), p, None)
        };
        let index = self.index();
        let units = self.unit_parents_for(q)?;
        let listing_page = |k: &[u8], v: &[u8]| -> Result<Option<Object>, RecordsError> {
            Ok(if q.reference_prefix.is_some() {
                match Uuid::from_slice(v) {
                    Ok(id) => load_object(index, id)?,
                    Err(_) => None,
                }
            } else if !words.is_empty() || by_field {
                object_at(index, k)?
            } else {
                serde_json::from_slice(v).ok()
            })
        };
        scan_page_marked_from(
            index,
            &listing,
            &prefix,
            first,
            page,
            MAX_SCAN_PER_PAGE,
            |k, v| {
                let obj = listing_page(k, v)?.filter(|o| {
                    matches(o, q, &words)
                        && filters
                            .iter()
                            .all(|f| f.matches(super::fields::values_of(o)))
                });
                let Some(o) = obj else {
                    return Ok(Scanned::Skip);
                };
                // Visibility first: whether a hidden object is in the unit or at the level
                // asked for must not change how the page ends.
                if !self.may_see(&o)? {
                    return Ok(Scanned::Hidden);
                }
                Ok(if self.in_unit_and_level(&o, q, units.as_ref())? {
                    Scanned::Item(o)
                } else {
                    Scanned::Skip
                })
            },
        )
    }

    /// Checks the query's words and fields (as [`Self::query`]), without paging.
    fn check_query(&self, q: &Query) -> Result<Vec<String>, RecordsError> {
        let words: Vec<String> = q
            .subject_words
            .iter()
            .flat_map(|w| schema::words(w))
            .collect();
        if q.subject_words.iter().any(|w| !w.trim().is_empty()) && words.is_empty() {
            return Err(RecordsError::Invalid {
                field: "subject_words".into(),
                reason: "no searchable word (words need 2 or more letters or digits)".into(),
            });
        }
        for (field, v) in [
            ("sender", &q.sender),
            ("recipient", &q.recipient),
            ("clerk", &q.clerk),
            ("external_reference", &q.external_reference),
        ] {
            if let Some(v) = v {
                super::validate::line(field, v, super::validate::MAX_NAME)?;
            }
        }
        Ok(words)
    }

    /// The object `id` if it exists, matches `q` and the bound caller may see it (a
    /// full-text hit is checked against the metadata criteria and access this way;
    /// nothing is logged).
    pub fn matching(&self, id: Uuid, q: &Query) -> Result<Option<Object>, RecordsError> {
        let words = self.check_query(q)?;
        let filters = super::fields::resolve_filters(self.index(), &q.custom_fields)?;
        let units = self.unit_parents_for(q)?;
        let Some(o) = load_object(self.index(), id)? else {
            return Ok(None);
        };
        if !matches(&o, q, &words)
            || !filters
                .iter()
                .all(|f| f.matches(super::fields::values_of(&o)))
            || !self.may_see(&o)?
            || !self.in_unit_and_level(&o, q, units.as_ref())?
        {
            return Ok(None);
        }
        Ok(Some(o))
    }

    /// As [`Self::query`], ordered by creation time (newest or oldest first, then by
    /// id). Every match is looked at before the first page (at most
    /// [`MAX_DATE_ORDER_SCAN`] keys; a query matching more is refused as too broad); a
    /// page token carries the last item's time and id, an item the caller saw.
    pub fn query_by_date(
        &self,
        q: &Query,
        newest_first: bool,
        page: &PageRequest,
    ) -> Result<Page<Object>, RecordsError> {
        const LISTING: &[u8] = b"by-date";
        let size = page_size(page)?;
        let after = if page.page_token.is_empty() {
            None
        } else {
            let raw = schema::decode_token(LISTING, &page.page_token).ok_or_else(bad_token)?;
            let (t, id) = raw.split_at_checked(8).ok_or_else(bad_token)?;
            let t = i64::from_be_bytes(t.try_into().map_err(|_| bad_token())?);
            let id = Uuid::from_slice(id).map_err(|_| bad_token())?;
            Some((t, id))
        };
        let mut all = Vec::new();
        let mut req = PageRequest {
            page_size: MAX_PAGE_SIZE,
            page_token: String::new(),
        };
        let mut rounds = 0usize;
        loop {
            let p = self.query(q, &req)?;
            rounds += 1;
            all.extend(p.items);
            match p.next_page_token {
                Some(t) if rounds < MAX_DATE_ORDER_ROUNDS && all.len() < MAX_DATE_ORDER_MATCHES => {
                    req.page_token = t
                }
                Some(_) => {
                    return Err(RecordsError::Invalid {
                        field: "order".into(),
                        reason: format!(
                            "the query matches too much to order by date (more than {MAX_DATE_ORDER_MATCHES} objects or {} index keys); narrow it",
                            MAX_DATE_ORDER_ROUNDS * MAX_SCAN_PER_PAGE
                        ),
                    })
                }
                None => break,
            }
        }
        let key = |o: &Object| (o.created().at.timestamp_micros(), o.id());
        all.sort_by_key(key);
        if newest_first {
            all.reverse();
        }
        let start = match after {
            None => 0,
            Some(a) => all
                .iter()
                .position(|o| {
                    let k = key(o);
                    if newest_first {
                        k < a
                    } else {
                        k > a
                    }
                })
                .unwrap_or(all.len()),
        };
        let items: Vec<Object> = all.iter().skip(start).take(size).cloned().collect();
        let next_page_token = (start + items.len() < all.len())
            .then(|| items.last())
            .flatten()
            .map(|o| {
                let (t, id) = key(o);
                let mut raw = t.to_be_bytes().to_vec();
                raw.extend_from_slice(id.as_bytes());
                schema::encode_token(LISTING, &raw)
            });
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// The units' parents, when `q` asks for a unit (read once per query).
    fn unit_parents_for(
        &self,
        q: &Query,
    ) -> Result<Option<BTreeMap<Uuid, Option<Uuid>>>, RecordsError> {
        q.org_unit
            .map(|_| super::org::unit_parents(self.index()))
            .transpose()
    }

    /// Whether `o` is in the query's unit and at its level (when it asks for them).
    /// Plan units have neither, so they match neither criterion.
    fn in_unit_and_level(
        &self,
        o: &Object,
        q: &Query,
        parents: Option<&BTreeMap<Uuid, Option<Uuid>>>,
    ) -> Result<bool, RecordsError> {
        if q.org_unit.is_none() && q.confidentiality.is_none() {
            return Ok(true);
        }
        let Some(access) = self.effective_access(o)? else {
            return Ok(false);
        };
        if q.confidentiality.is_some_and(|c| c != access.level) {
            return Ok(false);
        }
        if let (Some(unit), Some(parents)) = (q.org_unit, parents) {
            // The nearest lead unit on the way up is the object's (own or inherited).
            let Some(lead) = access.lead_units.first() else {
                return Ok(false);
            };
            if !super::org::ancestors(parents, *lead).contains(&unit) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

fn matches(o: &Object, q: &Query, words: &[String]) -> bool {
    if q.kind.is_some_and(|k| k != o.kind()) {
        return false;
    }
    if let Some(p) = &q.reference_prefix {
        match o {
            Object::File(f) if f.reference.starts_with(p.as_str()) => {}
            _ => return false,
        }
    }
    if !words.is_empty() {
        let have = schema::words(o.subject());
        if !words.iter().all(|w| have.contains(w)) {
            return false;
        }
    }
    if q.status.is_some_and(|s| s != o.status()) {
        return false;
    }
    if q.wants_document_fields() {
        let Object::Document(d) = o else {
            return false;
        };
        let field =
            |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| contains(have, w));
        if !field(&q.sender, &d.sender)
            || !field(&q.clerk, &d.clerk)
            || !field(&q.external_reference, &d.external_reference)
            || !q
                .recipient
                .as_deref()
                .is_none_or(|w| d.recipients.iter().any(|r| contains(r, w)))
        {
            return false;
        }
    }
    let created = super::civil::civil_date(o.created().at);
    if q.created_from.is_some_and(|d| created < d) || q.created_to.is_some_and(|d| created > d) {
        return false;
    }
    if q.closed_from.is_some() || q.closed_to.is_some() {
        let closed = match o {
            Object::File(f) if f.status == Status::Closed => f.closed_on,
            Object::Case(c) if c.status == Status::Closed => c.closed_on,
            _ => None,
        };
        let Some(closed) = closed else { return false };
        if q.closed_from.is_some_and(|d| closed < d) || q.closed_to.is_some_and(|d| closed > d) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(
        n: u8,
    ) -> Vec<Result<(crate::backend::Value, crate::backend::Value), crate::index::IndexError>> {
        (0..n)
            .map(|i| {
                Ok((
                    crate::backend::Value::from(&[b'p', i][..]),
                    crate::backend::Value::from(&[][..]),
                ))
            })
            .collect()
    }

    /// Keys 0..10; 1 to 6 are hidden objects, the rest do not match. A page that stops
    /// after 2 scanned keys must not end on a hidden one: it goes on to key 7.
    #[test]
    fn a_scan_limited_page_never_ends_on_a_hidden_key() {
        let hidden = |k: &[u8]| (1..=6).contains(&k[1]);
        let map = |k: &[u8], _: &[u8]| -> Result<Scanned<u8>, RecordsError> {
            Ok(if hidden(k) {
                Scanned::Hidden
            } else {
                Scanned::Skip
            })
        };
        let page = page_from(keys(10).into_iter(), b"l", b"p", 10, 2, map).unwrap();
        assert!(page.items.is_empty());
        let token = page.next_page_token.expect("more keys follow");
        let last = schema::decode_token(b"l", &token).unwrap();
        assert_eq!(last, vec![b'p', 7]);
        // Without hidden keys the limit stops where it always did.
        let skip = |_: &[u8], _: &[u8]| -> Result<Scanned<u8>, RecordsError> { Ok(Scanned::Skip) };
        let page = page_from(keys(10).into_iter(), b"l", b"p", 10, 2, skip).unwrap();
        let last = schema::decode_token(b"l", &page.next_page_token.unwrap()).unwrap();
        assert_eq!(last, vec![b'p', 1]);
    }

    /// A full page ends on its last item, whatever is hidden after it.
    #[test]
    fn a_full_page_ends_on_its_last_item() {
        let map = |k: &[u8], _: &[u8]| -> Result<Scanned<u8>, RecordsError> {
            Ok(if k[1].is_multiple_of(2) {
                Scanned::Item(k[1])
            } else {
                Scanned::Hidden
            })
        };
        let page = page_from(keys(10).into_iter(), b"l", b"p", 2, usize::MAX, map).unwrap();
        assert_eq!(page.items, vec![0, 2]);
        let last = schema::decode_token(b"l", &page.next_page_token.unwrap()).unwrap();
        assert_eq!(last, vec![b'p', 2]);
    }
}
