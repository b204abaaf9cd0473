//! Resource names: `tenants/{tenant}/planUnits/{id}`, `.../files/{id}`, `.../cases/{id}`,
//! `.../documents/{id}`, `.../documents/{id}/versions/{n}`,
//! `.../versions/{n}/renditions/{id}`, `tenants/{tenant}/entries/{seq}`,
//! `tenants/{tenant}/checkpoints/{size}`, `tenants/{tenant}/tokens/{id}` and
//! `tenants/{tenant}/witnesses/{fingerprint}`.

use akte_core::records::ObjectKind;
use uuid::Uuid;

use crate::error::ApiError;

/// Collection segment of a kind of object.
pub fn collection(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::PlanUnit => "planUnits",
        ObjectKind::File => "files",
        ObjectKind::Case => "cases",
        ObjectKind::Document => "documents",
    }
}

/// `tenants/{tenant}`.
pub fn tenant_name(tenant: &str) -> String {
    format!("tenants/{tenant}")
}

/// The name of an object.
pub fn object_name(tenant: &str, kind: ObjectKind, id: Uuid) -> String {
    format!("tenants/{tenant}/{}/{id}", collection(kind))
}

/// The name of a version.
pub fn version_name(tenant: &str, document: Uuid, number: u32) -> String {
    format!("tenants/{tenant}/documents/{document}/versions/{number}")
}

/// The name of a rendition.
pub fn rendition_name(tenant: &str, document: Uuid, number: u32, rendition: Uuid) -> String {
    format!("tenants/{tenant}/documents/{document}/versions/{number}/renditions/{rendition}")
}

fn bad(field: &str, reason: impl Into<String>) -> ApiError {
    ApiError::InvalidName {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn shown(name: &str) -> String {
    name.chars().take(200).collect()
}

fn check_tenant(field: &str, name: &str, t: &str) -> Result<(), ApiError> {
    akte_core::store::validate_tenant_id(t)
        .map_err(|e| bad(field, format!("{:?}: {e}", shown(name))))
}

/// Splits a name into segments, refusing empty ones.
fn segments<'a>(field: &str, name: &'a str) -> Result<Vec<&'a str>, ApiError> {
    if name.is_empty() {
        return Err(bad(field, "is required"));
    }
    if name.len() > 512 {
        return Err(bad(field, "is longer than 512 bytes"));
    }
    let segs: Vec<&str> = name.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) || segs.first() != Some(&"tenants") {
        return Err(bad(
            field,
            format!(
                "{:?} is not a resource name of the form tenants/{{tenant}}/...",
                shown(name)
            ),
        ));
    }
    Ok(segs)
}

/// An object id in a name. The nil UUID is a UUID: it names no object, so asking for it
/// is NOT_FOUND like any other id that was never given out, not INVALID_ARGUMENT.
fn uuid(field: &str, name: &str, s: &str) -> Result<Uuid, ApiError> {
    match Uuid::parse_str(s) {
        Ok(u) => Ok(u),
        _ => Err(bad(
            field,
            format!("{:?}: {s:?} is not an object id (a UUID)", shown(name)),
        )),
    }
}

/// Parses `tenants/{tenant}`.
pub fn tenant(field: &str, name: &str) -> Result<String, ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 2 {
        return Err(bad(
            field,
            format!("{:?} is not tenants/{{tenant}}", shown(name)),
        ));
    }
    check_tenant(field, name, segs[1])?;
    Ok(segs[1].to_owned())
}

fn kind_of(collection: &str) -> Option<ObjectKind> {
    Some(match collection {
        "planUnits" => ObjectKind::PlanUnit,
        "files" => ObjectKind::File,
        "cases" => ObjectKind::Case,
        "documents" => ObjectKind::Document,
        _ => return None,
    })
}

/// A parsed object name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// The tenant.
    pub tenant: String,
    /// The kind, from the collection segment.
    pub kind: ObjectKind,
    /// The id.
    pub id: Uuid,
}

/// Parses the name of a plan unit, file, case or document.
pub fn object(field: &str, name: &str) -> Result<ObjectName, ApiError> {
    let segs = segments(field, name)?;
    let kind = (segs.len() == 4).then(|| kind_of(segs[2])).flatten();
    let Some(kind) = kind else {
        return Err(bad(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/{{planUnits|files|cases|documents}}/{{id}}",
                shown(name)
            ),
        ));
    };
    check_tenant(field, name, segs[1])?;
    Ok(ObjectName {
        tenant: segs[1].to_owned(),
        kind,
        id: uuid(field, name, segs[3])?,
    })
}

/// Parses the name of an object of one of the given kinds.
pub fn object_of(field: &str, name: &str, kinds: &[ObjectKind]) -> Result<ObjectName, ApiError> {
    let o = object(field, name)?;
    if !kinds.contains(&o.kind) {
        let want: Vec<String> = kinds
            .iter()
            .map(|k| format!("tenants/{{tenant}}/{}/{{id}}", collection(*k)))
            .collect();
        return Err(bad(
            field,
            format!("{:?} is not one of {}", shown(name), want.join(", ")),
        ));
    }
    Ok(o)
}

/// Parses either `tenants/{tenant}` (`None`) or an object name of one of the given kinds.
pub fn tenant_or_object(
    field: &str,
    name: &str,
    kinds: &[ObjectKind],
) -> Result<(String, Option<ObjectName>), ApiError> {
    if segments(field, name)?.len() == 2 {
        return Ok((tenant(field, name)?, None));
    }
    let o = object_of(field, name, kinds)?;
    Ok((o.tenant.clone(), Some(o)))
}

/// A parsed version or rendition name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionName {
    /// The tenant.
    pub tenant: String,
    /// The document.
    pub document: Uuid,
    /// The version number.
    pub number: u32,
    /// The rendition, for a rendition name.
    pub rendition: Option<Uuid>,
}

/// Parses a version name, or (with `allow_rendition`) a rendition name.
pub fn version(field: &str, name: &str, allow_rendition: bool) -> Result<VersionName, ApiError> {
    let segs = segments(field, name)?;
    let shape_ok = segs.get(2) == Some(&"documents")
        && segs.get(4) == Some(&"versions")
        && (segs.len() == 6
            || (allow_rendition && segs.len() == 8 && segs.get(6) == Some(&"renditions")));
    if !shape_ok {
        let want = if allow_rendition {
            "tenants/{tenant}/documents/{id}/versions/{number}[/renditions/{id}]"
        } else {
            "tenants/{tenant}/documents/{id}/versions/{number}"
        };
        return Err(bad(field, format!("{:?} is not {want}", shown(name))));
    }
    check_tenant(field, name, segs[1])?;
    let number = segs[5]
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0 && !segs[5].starts_with('0'))
        .ok_or_else(|| {
            bad(
                field,
                format!("{:?}: the version number must be 1, 2, ...", shown(name)),
            )
        })?;
    let rendition = match segs.get(7) {
        Some(r) => Some(uuid(field, name, r)?),
        None => None,
    };
    Ok(VersionName {
        tenant: segs[1].to_owned(),
        document: uuid(field, name, segs[3])?,
        number,
        rendition,
    })
}

/// Parses `tenants/{tenant}/entries/{seq}`.
pub fn entry(field: &str, name: &str) -> Result<(String, u64), ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 4 || segs[2] != "entries" {
        return Err(bad(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/entries/{{seq}}",
                shown(name)
            ),
        ));
    }
    check_tenant(field, name, segs[1])?;
    let seq = segs[3].parse::<u64>().map_err(|_| {
        bad(
            field,
            format!("{:?}: the entry number must be 0, 1, ...", shown(name)),
        )
    })?;
    Ok((segs[1].to_owned(), seq))
}

/// Parses `tenants/{tenant}/checkpoints/{tree_size}` (decimal, no sign, no leading zeros:
/// one spelling per checkpoint, as in the checkpoint text itself).
pub fn checkpoint(field: &str, name: &str) -> Result<(String, u64), ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 4 || segs[2] != "checkpoints" {
        return Err(bad(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/checkpoints/{{tree_size}}",
                shown(name)
            ),
        ));
    }
    check_tenant(field, name, segs[1])?;
    let digits = segs[3];
    let size = Some(digits)
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        .filter(|d| d.len() == 1 || !d.starts_with('0'))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| {
            bad(
                field,
                format!(
                    "{:?}: the tree size must be a decimal number without leading zeros",
                    shown(name)
                ),
            )
        })?;
    Ok((segs[1].to_owned(), size))
}

/// `tenants/{tenant}/witnesses/{fingerprint}`.
pub fn witness_name(tenant: &str, fingerprint: &str) -> String {
    format!("tenants/{tenant}/witnesses/{fingerprint}")
}

/// Parses `tenants/{tenant}/witnesses/{fingerprint}`: the fingerprint is 64 lower-case hex
/// digits (SHA-256 of the witness's public key).
pub fn witness(field: &str, name: &str) -> Result<(String, String), ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 4 || segs[2] != "witnesses" {
        return Err(bad(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/witnesses/{{fingerprint}}",
                shown(name)
            ),
        ));
    }
    check_tenant(field, name, segs[1])?;
    let fp = segs[3];
    if fp.len() != 64
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad(
            field,
            format!(
                "{:?}: the witness id must be its key fingerprint, 64 lower-case hex digits",
                shown(name)
            ),
        ));
    }
    Ok((segs[1].to_owned(), fp.to_owned()))
}

/// Scope of a token parent: `tenants/{tenant}` or `tenants/-` (all tenants, `None`).
pub fn token_parent(field: &str, name: &str) -> Result<Option<String>, ApiError> {
    if name == "tenants/-" {
        return Ok(None);
    }
    tenant(field, name).map(Some)
}

/// Parses `tenants/{tenant}/tokens/{id}` (tenant `-` for all tenants, `None`).
pub fn token(field: &str, name: &str) -> Result<(Option<String>, String), ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 4 || segs[2] != "tokens" {
        return Err(bad(
            field,
            format!("{:?} is not tenants/{{tenant}}/tokens/{{id}}", shown(name)),
        ));
    }
    let scope = if segs[1] == "-" {
        None
    } else {
        check_tenant(field, name, segs[1])?;
        Some(segs[1].to_owned())
    };
    Ok((scope, segs[3].to_owned()))
}

/// Parses `tenants/{tenant}/{collection}/{uuid}` for collections outside the object tree
/// (`holds`, `disposalProcesses`, `destructionRecords`).
pub fn resource(field: &str, name: &str, collection: &str) -> Result<(String, Uuid), ApiError> {
    let segs = segments(field, name)?;
    if segs.len() != 4 || segs[2] != collection {
        return Err(bad(
            field,
            format!(
                "{:?} is not tenants/{{tenant}}/{collection}/{{id}}",
                shown(name)
            ),
        ));
    }
    check_tenant(field, name, segs[1])?;
    let id = uuid(field, name, segs[3])?;
    Ok((segs[1].to_owned(), id))
}

/// `tenants/{tenant}/{collection}/{id}`.
pub fn resource_name(tenant: &str, collection: &str, id: Uuid) -> String {
    format!("tenants/{tenant}/{collection}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let id = Uuid::new_v4();
        let n = object_name("bauamt", ObjectKind::File, id);
        let o = object("name", &n).unwrap();
        assert_eq!(
            (o.tenant.as_str(), o.kind, o.id),
            ("bauamt", ObjectKind::File, id)
        );
        assert!(object_of("name", &n, &[ObjectKind::Case]).is_err());
        let v = version("name", &version_name("t", id, 3), true).unwrap();
        assert_eq!((v.number, v.rendition), (3, None));
        let r = Uuid::new_v4();
        let v = version("name", &rendition_name("t", id, 3, r), true).unwrap();
        assert_eq!(v.rendition, Some(r));
        assert!(version("name", &rendition_name("t", id, 3, r), false).is_err());
        assert_eq!(
            entry("name", "tenants/t/entries/7").unwrap(),
            ("t".into(), 7)
        );
        assert_eq!(tenant("p", "tenants/bauamt").unwrap(), "bauamt");
        assert_eq!(token_parent("p", "tenants/-").unwrap(), None);
        assert_eq!(
            checkpoint("name", "tenants/t/checkpoints/0").unwrap(),
            ("t".into(), 0)
        );
        assert_eq!(
            checkpoint("name", "tenants/t/checkpoints/18446744073709551615").unwrap(),
            ("t".into(), u64::MAX)
        );
        // The nil UUID is a UUID: the name parses, and the lookup says NOT_FOUND.
        let nil = object(
            "name",
            "tenants/t/files/00000000-0000-0000-0000-000000000000",
        )
        .unwrap();
        assert!(nil.id.is_nil());
        let fp = "ab".repeat(32);
        assert_eq!(
            witness("name", &witness_name("t", &fp)).unwrap(),
            ("t".into(), fp)
        );
    }

    #[test]
    fn refuses_malformed_checkpoint_and_witness_names() {
        for bad in [
            "tenants/t/checkpoints/",
            "tenants/t/checkpoints/01",
            "tenants/t/checkpoints/+1",
            "tenants/t/checkpoints/-1",
            "tenants/t/checkpoints/1x",
            "tenants/t/checkpoints/18446744073709551616",
            "tenants/t/entries/1",
            "tenants/T/checkpoints/1",
        ] {
            assert!(checkpoint("name", bad).is_err(), "{bad:?}");
        }
        for bad in [
            format!("tenants/t/witnesses/{}", "AB".repeat(32)),
            format!("tenants/t/witnesses/{}", "ab".repeat(31)),
            format!("tenants/t/witnesses/{}g", "a".repeat(63)),
            format!("tenants/t/tokens/{}", "ab".repeat(32)),
            "tenants/t/witnesses/archiv.example".to_owned(),
        ] {
            assert!(witness("name", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refuses_malformed_names() {
        for bad in [
            "",
            "tenants",
            "tenants/",
            "tenants/Bauamt/files/x",
            "tenants/t/files/not-a-uuid",
            "tenants/t/widgets/00000000-0000-4000-8000-000000000001",
            "tenants//files/x",
            "other/t",
        ] {
            assert!(object("name", bad).is_err(), "{bad:?}");
        }
        let id = Uuid::new_v4();
        for bad in ["0", "01", "-1", "x", "4294967296"] {
            let n = format!("tenants/t/documents/{id}/versions/{bad}");
            assert!(version("name", &n, true).is_err(), "{n}");
        }
    }
}
