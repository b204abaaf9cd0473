//! SearchService: metadata search over `TenantRecords::query` (in index order or by
//! date), and full-text search over akte-fulltext's index, each hit checked against the
//! metadata criteria and the caller's view.

use akte_core::records::{Object, ObjectKind, PageRequest, Query, Status as State, TenantRecords};
use akte_fulltext::{FulltextError, Ranking};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::Operation;
use crate::convert::{self, parse_date};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::search_service_server::SearchService;

use super::{blocking, Api};

/// The order a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Unspecified,
    Relevance,
    NewestFirst,
    OldestFirst,
}

fn order_of(v: i32) -> Result<Order, ApiError> {
    Ok(match pb::SearchOrder::try_from(v) {
        Ok(pb::SearchOrder::Unspecified) => Order::Unspecified,
        Ok(pb::SearchOrder::Relevance) => Order::Relevance,
        Ok(pb::SearchOrder::NewestFirst) => Order::NewestFirst,
        Ok(pb::SearchOrder::OldestFirst) => Order::OldestFirst,
        Err(_) => return Err(ApiError::field("order", format!("{v} is not an order"))),
    })
}

fn text_error(e: FulltextError) -> ApiError {
    match e {
        FulltextError::Query(reason) => ApiError::field("text", reason),
        FulltextError::Records(r) => r.into(),
        other => ApiError::Internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl SearchService for Api {
    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant = names::tenant("parent", &r.parent)?;
        let kind = match pb::ObjectType::try_from(r.r#type) {
            Ok(pb::ObjectType::Unspecified) => None,
            Ok(pb::ObjectType::PlanUnit) => Some(ObjectKind::PlanUnit),
            Ok(pb::ObjectType::File) => Some(ObjectKind::File),
            Ok(pb::ObjectType::Case) => Some(ObjectKind::Case),
            Ok(pb::ObjectType::Document) => Some(ObjectKind::Document),
            Err(_) => {
                return Err(
                    ApiError::field("type", format!("{} is not an object type", r.r#type)).into(),
                )
            }
        };
        let status = match pb::State::try_from(r.state) {
            Ok(pb::State::Unspecified) => None,
            Ok(pb::State::Open) => Some(State::Open),
            Ok(pb::State::Closed) => Some(State::Closed),
            Err(_) => {
                return Err(ApiError::field("state", format!("{} is not a state", r.state)).into())
            }
        };
        let order = order_of(r.order)?;
        let org_unit = if r.org_unit.is_empty() {
            None
        } else {
            Some(super::access::unit_in("org_unit", &r.org_unit, &tenant)?)
        };
        let text = r.text.trim().to_owned();
        if text.len() > akte_fulltext::query::MAX_QUERY {
            return Err(ApiError::field(
                "text",
                format!("longer than {} bytes", akte_fulltext::query::MAX_QUERY),
            )
            .into());
        }
        let q = Query {
            kind,
            reference_prefix: (!r.reference_prefix.is_empty()).then(|| r.reference_prefix.clone()),
            subject_words: r
                .subject_words
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            status,
            created_from: parse_date("created_from", r.created_from.as_ref())?,
            created_to: parse_date("created_to", r.created_to.as_ref())?,
            closed_from: parse_date("closed_from", r.closed_from.as_ref())?,
            closed_to: parse_date("closed_to", r.closed_to.as_ref())?,
            sender: (!r.sender.is_empty()).then(|| r.sender.clone()),
            recipient: (!r.recipient.is_empty()).then(|| r.recipient.clone()),
            clerk: (!r.clerk.is_empty()).then(|| r.clerk.clone()),
            external_reference: (!r.external_reference.is_empty())
                .then(|| r.external_reference.clone()),
            custom_fields: r
                .custom_fields
                .iter()
                .map(|f| akte_core::records::FieldFilter {
                    name: f.field.clone(),
                    equals: (!f.equals.is_empty()).then(|| f.equals.clone()),
                    from: (!f.min.is_empty()).then(|| f.min.clone()),
                    to: (!f.max.is_empty()).then(|| f.max.clone()),
                })
                .collect(),
            org_unit,
            confidentiality: convert::parse_confidentiality("confidentiality", r.confidentiality)?,
        };
        // A token continues the same query only: every criterion is part of its scope.
        let criteria = format!("{:?}", (&q, r.r#type, order, &text));
        let scope = Scope::new("Search", &[&r.parent, &criteria]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let fulltext = self.state().fulltext.clone();
        let (results, next) = blocking(move || {
            let (found, next) = if text.is_empty() {
                let p = match order {
                    Order::Unspecified | Order::Relevance => t.query(&q, &page)?,
                    Order::NewestFirst => t.query_by_date(&q, true, &page)?,
                    Order::OldestFirst => t.query_by_date(&q, false, &page)?,
                };
                let found: Vec<Found> = p.items.into_iter().map(|o| (o, Vec::new(), 0.0)).collect();
                (found, p.next_page_token)
            } else {
                text_page(&t, &fulltext, &tenant, &text, &q, order, &page)?
            };
            let objects: Vec<Object> = found.iter().map(|(o, _, _)| o.clone()).collect();
            t.log_listed(&objects)?;
            let mut out = Vec::with_capacity(found.len());
            for (o, snippets, score) in found {
                use pb::search_result::Object as R;
                let object = match o {
                    Object::PlanUnit(u) => R::PlanUnit(convert::plan_unit(&tenant, &u)),
                    Object::File(f) => R::File(convert::file(&tenant, &f)),
                    Object::Case(c) => R::Case(convert::case(&tenant, &c)),
                    Object::Document(d) => {
                        let parent = t.kind_of(d.parent);
                        R::Document(convert::document(&tenant, &d, parent))
                    }
                };
                out.push(pb::SearchResult {
                    object: Some(object),
                    snippets,
                    score,
                });
            }
            Ok((out, next))
        })
        .await?;
        Ok(Response::new(pb::SearchResponse {
            results,
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }
}

/// A found object with its snippets and score.
type Found = (Object, Vec<String>, f32);

/// Prefix of the (sealed) page token of a text search.
const TEXT_TOKEN: &str = "text:";

/// One page of a text search: the hits in the index's order, each kept only if it is a
/// document that matches the metadata criteria and that the caller may see. The token
/// counts the results the caller was shown before (hidden hits never count), so neither
/// it nor a page's size tells anything about what the caller may not see.
fn text_page(
    t: &TenantRecords,
    fulltext: &akte_fulltext::Fulltext,
    tenant: &str,
    text: &str,
    q: &Query,
    order: Order,
    page: &PageRequest,
) -> Result<(Vec<Found>, Option<String>), ApiError> {
    let bad_token = || ApiError::field("page_token", "not a page token of this search");
    let skip: usize = if page.page_token.is_empty() {
        0
    } else {
        page.page_token
            .strip_prefix(TEXT_TOKEN)
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad_token)?
    };
    let size = match page.page_size {
        0 => akte_core::records::DEFAULT_PAGE_SIZE as usize,
        n => n as usize,
    };
    if q.kind.is_some_and(|k| k != ObjectKind::Document) {
        // Only documents have text.
        fulltext
            .search(tenant, text, Ranking::Relevance)
            .map_err(text_error)?;
        return Ok((Vec::new(), None));
    }
    let ranking = match order {
        Order::Unspecified | Order::Relevance => Ranking::Relevance,
        Order::NewestFirst => Ranking::NewestFirst,
        Order::OldestFirst => Ranking::OldestFirst,
    };
    let hits = fulltext.search(tenant, text, ranking).map_err(text_error)?;
    let mut seen = 0usize;
    let mut items: Vec<(Object, f32)> = Vec::new();
    let mut more = false;
    for h in hits {
        let Some(o) = t.matching(h.id, q)? else {
            continue;
        };
        if !matches!(o, Object::Document(_)) {
            continue;
        }
        seen += 1;
        if seen <= skip {
            continue;
        }
        if items.len() == size {
            more = true;
            break;
        }
        let score = if ranking == Ranking::Relevance {
            h.score
        } else {
            0.0
        };
        items.push((o, score));
    }
    let ids: Vec<Uuid> = items.iter().map(|(o, _)| o.id()).collect();
    let snippets = fulltext.snippets(tenant, text, &ids).map_err(text_error)?;
    let next = more.then(|| format!("{TEXT_TOKEN}{}", skip + items.len()));
    let out = items
        .into_iter()
        .zip(snippets)
        .map(|((o, score), s)| (o, s, score))
        .collect();
    Ok((out, next))
}
