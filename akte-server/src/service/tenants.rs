//! TenantService: tenants and tokens.

use tonic::{Request, Response, Status};

use crate::auth::{AuthError, Operation, Role, TokenRecord};
use crate::convert::{self, timestamp};
use crate::error::ApiError;
use crate::names;
use crate::page_token::Scope;
use crate::pb::akte::v1 as pb;
use crate::pb::akte::v1::tenant_service_server::TenantService;

use super::{blocking, page_after, Api, Caller};

fn tenant_msg(t: &akte_core::store::Tenant) -> pb::Tenant {
    pb::Tenant {
        name: names::tenant_name(t.id()),
        tenant_id: t.id().to_owned(),
        origin: t.origin().to_owned(),
        verifier_key: t.verifier().to_string(),
        journal_size: t.size().unwrap_or(0),
    }
}

fn role_msg(r: Role) -> i32 {
    (match r {
        Role::Reader => pb::Role::Reader,
        Role::Clerk => pb::Role::Clerk,
        Role::Registrar => pb::Role::Registrar,
        Role::Archivist => pb::Role::Archivist,
        Role::Admin => pb::Role::Admin,
    }) as i32
}

fn parse_role(v: i32) -> Result<Role, ApiError> {
    Ok(match pb::Role::try_from(v) {
        Ok(pb::Role::Reader) => Role::Reader,
        Ok(pb::Role::Clerk) => Role::Clerk,
        Ok(pb::Role::Registrar) => Role::Registrar,
        Ok(pb::Role::Archivist) => Role::Archivist,
        Ok(pb::Role::Admin) => Role::Admin,
        _ => return Err(ApiError::field("roles", format!("{v} is not a role"))),
    })
}

fn token_msg(t: &TokenRecord) -> pb::Token {
    let scope = if t.tenant == "*" { "-" } else { &t.tenant };
    pb::Token {
        name: format!("tenants/{scope}/tokens/{}", t.id),
        principal: t.principal.clone(),
        tenant: t.tenant.clone(),
        roles: t.roles.iter().map(|r| role_msg(*r)).collect(),
        create_time: t.created.as_ref().map(timestamp),
        description: t.description.clone(),
        expire_time: t.expires.as_ref().map(timestamp),
        org_units: t
            .units
            .iter()
            .map(|u| format!("tenants/{}/{}/{u}", t.tenant, super::access::ORG_UNITS))
            .collect(),
    }
}

impl Api {
    /// The units a new token is bound to: units of its tenant that exist.
    fn token_units(
        &self,
        caller: &super::Caller,
        scope: Option<&str>,
        names_given: &[String],
    ) -> Result<Vec<String>, ApiError> {
        if names_given.is_empty() {
            return Ok(Vec::new());
        }
        let Some(tenant) = scope else {
            return Err(ApiError::field(
                "org_units",
                "a token for all tenants cannot be bound to units",
            ));
        };
        let t = self.tenant(caller, tenant, tenant, crate::auth::Operation::Administer)?;
        let mut out = Vec::new();
        for (i, name) in names_given.iter().enumerate() {
            let field = format!("org_units[{i}]");
            let (t_name, id) = names::resource(&field, name, super::access::ORG_UNITS)?;
            if t_name != tenant {
                return Err(ApiError::field(&field, "is a unit of another tenant"));
            }
            t.org_unit(id).map_err(|_| ApiError::NotFound {
                resource: name.clone(),
            })?;
            out.push(id.to_string());
        }
        Ok(out)
    }
}

/// The expiry of a new token: unset, or a valid timestamp (checked against now by the
/// token store).
fn expire_time(
    ts: Option<&prost_types::Timestamp>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let Some(ts) = ts else {
        return Ok(None);
    };
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ApiError::field("expire_time", "nanos must be 0 to 999,999,999"))?;
    chrono::DateTime::from_timestamp(ts.seconds, nanos)
        .map(Some)
        .ok_or_else(|| ApiError::field("expire_time", "is out of range"))
}

fn auth_error(e: AuthError) -> ApiError {
    match e {
        AuthError::Invalid { field, reason } => ApiError::field(field, reason),
        AuthError::NotFound(id) => ApiError::NotFound { resource: id },
        other => ApiError::Internal(other.to_string()),
    }
}

impl Api {
    /// Checks that the caller administers the token scope (`None`: all tenants).
    fn token_scope(
        &self,
        caller: &Caller,
        scope: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        match scope {
            None => self.global_admin(caller),
            Some(t) => self
                .tenant(caller, t, name, Operation::Administer)
                .map(|_| ()),
        }
    }
}

#[tonic::async_trait]
impl TenantService for Api {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let caller = self.caller(&req)?;
        self.global_admin(&caller)?;
        let id = req.into_inner().tenant_id;
        let records = self.state.records.clone();
        let t = blocking(move || Ok(records.create_tenant(&id)?)).await?;
        tracing::info!(tenant = %t.tenant().id(), principal = %caller.principal.name, "tenant created");
        Ok(Response::new(tenant_msg(t.tenant())))
    }

    async fn get_tenant(
        &self,
        req: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let tenant = names::tenant("name", &name)?;
        let t = self.tenant(&caller, &tenant, &name, Operation::Read)?;
        Ok(Response::new(tenant_msg(t.tenant())))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let caller = self.caller(&req)?;
        self.global_admin(&caller)?;
        let r = req.into_inner();
        let size = convert::page_len(r.page_size)?;
        let scope = Scope::new("ListTenants", &[]);
        let after = self.open_token(&scope, &r.page_token)?;
        let after = (!after.is_empty()).then_some(after);
        let mut tenants = self.state.records.store().tenants();
        tenants.sort_by(|a, b| a.id().cmp(b.id()));
        let (page, next) = page_after(&tenants, |t| t.id().to_owned(), after.as_ref(), size);
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: page.iter().map(|t| tenant_msg(t)).collect(),
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let scope = names::token_parent("parent", &r.parent)?;
        self.token_scope(&caller, scope.as_deref(), &r.parent)?;
        if r.roles.is_empty() {
            return Err(ApiError::field("roles", "at least one role is required").into());
        }
        let roles = r
            .roles
            .iter()
            .map(|v| parse_role(*v))
            .collect::<Result<Vec<_>, _>>()?;
        let expires = expire_time(r.expire_time.as_ref())?;
        let units = self.token_units(&caller, scope.as_deref(), &r.org_units)?;
        let state = self.state.clone();
        let (record, secret) = blocking(move || {
            let mut tokens = state
                .tokens
                .write()
                .map_err(|_| ApiError::Internal("token store lock poisoned".into()))?;
            tokens
                .create_bound(
                    &r.principal,
                    scope.as_deref(),
                    roles,
                    units,
                    &r.description,
                    expires,
                )
                .map_err(auth_error)
        })
        .await?;
        tracing::info!(token = %record.id, principal = %record.principal, tenant = %record.tenant, by = %caller.principal.name, "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_msg(&record)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = self.caller(&req)?;
        let r = req.into_inner();
        let tenant_scope = names::token_parent("parent", &r.parent)?;
        self.token_scope(&caller, tenant_scope.as_deref(), &r.parent)?;
        let scope = Scope::new("ListTokens", &[&r.parent]);
        let after = self.open_token(&scope, &r.page_token)?;
        let after = (!after.is_empty()).then_some(after);
        let size = convert::page_len(r.page_size)?;
        let mut tokens = self
            .state
            .tokens
            .read()
            .map_err(|_| ApiError::Internal("token store lock poisoned".into()))?
            .list(tenant_scope.as_deref());
        // Oldest first; the cursor is creation time and id of the last token of the page,
        // so that tokens created or deleted meanwhile neither repeat nor skip others.
        let key = |t: &TokenRecord| {
            format!(
                "{}|{}",
                t.created
                    .map(|c| c.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                    .unwrap_or_default(),
                t.id
            )
        };
        tokens.sort_by_key(key);
        let (page, next) = page_after(&tokens, key, after.as_ref(), size);
        Ok(Response::new(pb::ListTokensResponse {
            tokens: page.into_iter().map(token_msg).collect(),
            next_page_token: self.seal_token(&scope, next.as_deref()),
        }))
    }

    async fn delete_token(
        &self,
        req: Request<pb::DeleteTokenRequest>,
    ) -> Result<Response<pb::DeleteTokenResponse>, Status> {
        let caller = self.caller(&req)?;
        let name = req.into_inner().name;
        let (scope, id) = names::token("name", &name)?;
        self.token_scope(&caller, scope.as_deref(), &name)?;
        let state = self.state.clone();
        let shown = name.clone();
        blocking(move || {
            let mut tokens = state
                .tokens
                .write()
                .map_err(|_| ApiError::Internal("token store lock poisoned".into()))?;
            tokens.delete(scope.as_deref(), &id).map_err(|e| match e {
                AuthError::NotFound(_) => ApiError::NotFound { resource: shown },
                other => auth_error(other),
            })
        })
        .await?;
        tracing::info!(token = %name, by = %caller.principal.name, "token deleted");
        Ok(Response::new(pb::DeleteTokenResponse {}))
    }
}
