//! Reading manifests: YAML or JSON, one or many documents, header checked before the body.

use serde_json::Value;

use crate::API_VERSION;
use crate::app::App;
use crate::error::{FieldError, FieldErrors};
use crate::id::AppId;
use crate::job::Job;
use crate::role::Role;

/// A record a user may apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Manifest {
    App(App),
    Role(Role),
    Job(Job),
}

/// Kinds a user may apply, for error messages.
pub const APPLYABLE_KINDS: [&str; 3] = ["App", "Role", "Job"];

impl Manifest {
    /// The record name, e.g. `prod_web`.
    pub fn name(&self) -> &str {
        let meta = match self {
            Manifest::App(r) => &r.metadata,
            Manifest::Role(r) => &r.metadata,
            Manifest::Job(r) => &r.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::App(_) => "App",
            Manifest::Role(_) => "Role",
            Manifest::Job(_) => "Job",
        }
    }

    /// The plural in API paths (`apps`, `roles`, `jobs`).
    pub fn plural(&self) -> &'static str {
        match self {
            Manifest::App(_) => "apps",
            Manifest::Role(_) => "roles",
            Manifest::Job(_) => "jobs",
        }
    }

    /// Checks the header, deserializes with field paths, normalizes the name and validates.
    pub fn from_value(doc: Value) -> Result<Manifest, FieldErrors> {
        check_header(&doc)?;
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        let mut problems = Vec::new();
        let manifest = match kind {
            "Role" => {
                let role: Role = deserialize(doc)?;
                let name = role.metadata.name.as_deref();
                match name.map(crate::role::check_name) {
                    None => problems.push(FieldError::new("metadata.name", "is required")),
                    Some(Err(e)) => problems.push(FieldError::new("metadata.name", e)),
                    Some(Ok(())) => {}
                }
                problems.extend(role.spec.validate());
                Manifest::Role(role)
            }
            "Job" => {
                let job: Job = deserialize(doc)?;
                match job.metadata.name.as_deref().map(check_job_name) {
                    None => problems.push(FieldError::new("metadata.name", "is required")),
                    Some(Err(e)) => problems.push(FieldError::new("metadata.name", e)),
                    Some(Ok(())) => {}
                }
                problems.extend(job.spec.validate());
                Manifest::Job(job)
            }
            _ => {
                let mut app: App = deserialize(doc)?;
                match app.metadata.name.as_deref().map(AppId::parse) {
                    None => problems.push(FieldError::new("metadata.name", "is required")),
                    Some(Err(e)) => problems.push(FieldError::new("metadata.name", e)),
                    Some(Ok(id)) => app.metadata.name = Some(id.name()),
                }
                app.spec.normalize();
                problems.extend(app.spec.validate());
                Manifest::App(app)
            }
        };
        FieldErrors(problems).into_result()?;
        Ok(manifest)
    }
}

/// Job names are DNS labels (lower-case letters, digits, `-`), so that run names
/// (`<job>-<n>`) and task ids stay readable.
pub fn check_job_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a job name: lower-case letters, digits and '-', at most 63"
        ))
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(doc: Value) -> Result<T, FieldErrors> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        FieldErrors(vec![FieldError::new(
            if path == "." { String::new() } else { path },
            reason,
        )])
    })
}

/// kube-derive types accept any `kind`, so the header is checked on the raw document first.
fn check_header(doc: &Value) -> Result<(), FieldErrors> {
    let Some(map) = doc.as_object() else {
        return Err(FieldErrors(vec![FieldError::new(
            "",
            "a manifest must be a mapping with apiVersion, kind, metadata and spec",
        )]));
    };
    let mut problems = Vec::new();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => problems.push(FieldError::new(
            "apiVersion",
            format!("'{other}' is not served: use {API_VERSION}"),
        )),
        None => problems.push(FieldError::new(
            "apiVersion",
            format!("is required ({API_VERSION})"),
        )),
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(kind) if APPLYABLE_KINDS.contains(&kind) => {}
        Some(other) => problems.push(FieldError::new(
            "kind",
            format!(
                "unknown kind '{other}': expected one of {}",
                APPLYABLE_KINDS.join(", ")
            ),
        )),
        None => problems.push(FieldError::new("kind", "is required")),
    }
    FieldErrors(problems).into_result()
}

/// Errors reading a file before any record is looked at.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not valid YAML or JSON: {0}")]
    Syntax(String),
}

/// Splits a YAML (or JSON) text into its documents, skipping empty ones.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ParseError> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_error(yaml: &str) -> FieldError {
        let doc = parse_documents(yaml).unwrap().remove(0);
        Manifest::from_value(doc).unwrap_err().0.remove(0)
    }

    #[test]
    fn reads_multi_document_yaml_and_json() {
        let yaml = "apiVersion: pacer.io/v1\nkind: App\nmetadata: {name: a}\nspec: {cmd: sleep 1}\n---\n---\n{\"apiVersion\": \"pacer.io/v1\", \"kind\": \"App\", \"metadata\": {\"name\": \"/prod/b\"}, \"spec\": {\"cmd\": \"x\", \"instances\": 3}}\n";
        let docs = parse_documents(yaml).unwrap();
        assert_eq!(docs.len(), 2);
        let names: Vec<String> = docs
            .into_iter()
            .map(|d| Manifest::from_value(d).unwrap().name().to_string())
            .collect();
        assert_eq!(names, vec!["a", "prod_b"]);
    }

    #[test]
    fn header_is_checked_before_the_body() {
        let e = first_error(
            "apiVersion: pacer.io/v1\nkind: Pod\nmetadata: {name: a}\nspec: {cmd: 3}\n",
        );
        assert_eq!(e.path, "kind");
        assert!(e.reason.contains("unknown kind 'Pod'"), "{}", e.reason);
        assert_eq!(
            first_error("apiVersion: v1\nkind: App\nmetadata: {name: a}\nspec: {}\n").path,
            "apiVersion"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = first_error(
            "apiVersion: pacer.io/v1\nkind: App\nmetadata: {name: a}\nspec: {cmd: x, instances: three}\n",
        );
        assert_eq!(e.path, "spec.instances");
        assert!(e.reason.contains("invalid type"), "{}", e.reason);
    }

    #[test]
    fn unknown_field_is_an_error() {
        let e = first_error(
            "apiVersion: pacer.io/v1\nkind: App\nmetadata: {name: a}\nspec: {cmd: x, instnces: 3}\n",
        );
        assert!(
            e.reason.contains("unknown field `instnces`"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn defaults_are_filled() {
        let doc = parse_documents(
            "apiVersion: pacer.io/v1\nkind: App\nmetadata: {name: a}\nspec: {cmd: x}\n",
        )
        .unwrap()
        .remove(0);
        let Ok(Manifest::App(app)) = Manifest::from_value(doc) else {
            panic!("an app manifest");
        };
        assert_eq!(
            (app.spec.instances, app.spec.cpus, app.spec.mem),
            (1, 1.0, 128.0)
        );
        assert_eq!(app.spec.upgrade_strategy.minimum_health_capacity, 1.0);
        assert_eq!(app.spec.backoff_factor, 1.15);
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(parse_documents("a: [b\n").is_err());
    }
}
