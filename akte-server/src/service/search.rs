//! SearchService: metadata search over `TenantRecords::query`.

use akte_core::records::{Object, ObjectKind, Query, Status as State};
use tonic::{Request, Response, Status};

use crate::auth::Operation;
use crate::convert::{self, parse_date};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::search_service_server::SearchService;

use super::{blocking, Api};

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
        };
        // A token continues the same query only: every criterion is part of its scope.
        let criteria = format!("{:?}", (&q, r.r#type));
        let scope = Scope::new("Search", &[&r.parent, &criteria]);
        let page = self.page_request(&scope, r.page_size, &r.page_token)?;
        let t = self.tenant(&caller, &tenant, &r.parent, Operation::Read)?;
        let (results, next) = blocking(move || {
            let p = t.query(&q, &page)?;
            t.log_listed(&p.items)?;
            let mut out = Vec::with_capacity(p.items.len());
            for o in p.items {
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
                });
            }
            Ok((out, p.next_page_token))
        })
        .await?;
        Ok(Response::new(pb::SearchResponse {
            results,
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }
}
