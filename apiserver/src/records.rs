//! Roles, jobs and job runs in the native API: apply (create or replace the spec, a no-op when
//! nothing changed), list, get, delete; start a run of a job; a run's logs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pacer_crd::job::next_run;
use pacer_crd::{Job, JobRun, Manifest, Record, Role};
use pacer_runtime::Api;
use pacer_runtime::Txn;
use serde_json::{Value, json};

use crate::access::{Need, Routes};
use crate::native::PREFIX;
use crate::{ApiError, ApiState, Applied};

/// Roles, drains, jobs and runs: quotas and drains are an admin's, jobs a writer's.
pub fn routes() -> Routes {
    use Method as M;
    Routes::under(PREFIX)
        .readable("/roles", |s| s.roles.clone())
        .on(M::PUT, "/roles/{name}", Need::ADMIN, apply_role)
        .on(
            M::DELETE,
            "/roles/{name}",
            Need::ADMIN,
            |s: State<ApiState>, p: Path<String>| delete_simple(s.0.roles, p.0),
        )
        .listed("/drains", |s| s.drains.clone())
        .on(M::PUT, "/nodes/{name}/drain", Need::ADMIN, drain)
        .on(M::DELETE, "/nodes/{name}/drain", Need::ADMIN, undrain)
        .readable("/jobs", |s| s.jobs.clone())
        .on(M::PUT, "/jobs/{name}", Need::WRITE, apply_job)
        .on(M::DELETE, "/jobs/{name}", Need::WRITE, delete_job)
        .on(M::POST, "/jobs/{name}/runs", Need::WRITE, start_run)
        .readable("/jobruns", |s| s.runs.clone())
}

fn parse(body: &Bytes, url_name: &str) -> Result<Manifest, ApiError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    let manifest = Manifest::from_value(doc).map_err(ApiError::Invalid)?;
    if manifest.name() != url_name {
        return Err(ApiError::field(
            "metadata.name",
            format!("does not match the URL ('{url_name}')"),
        ));
    }
    Ok(manifest)
}

/// A manifest of another kind sent to `expected`'s path: 422 naming where it belongs.
pub(crate) fn wrong_kind(manifest: &Manifest, expected: &str) -> ApiError {
    ApiError::field(
        "kind",
        format!(
            "a {} is applied at /{}, not as {} {expected}",
            manifest.kind(),
            manifest.plural(),
            if expected.starts_with(['A', 'E', 'I', 'O', 'U']) {
                "an"
            } else {
                "a"
            }
        ),
    )
}

/// What applying `desired` over `current` (the stored record, if any) comes to: a new record,
/// the stored one as it is, or the stored one with `desired`'s spec and labels (status kept).
fn decide<K, S>(
    current: Option<K>,
    desired: &K,
    spec_of: impl Fn(&K) -> S,
    set_spec: impl Fn(&mut K, S),
) -> (Applied, K)
where
    K: Record,
    S: PartialEq,
{
    let Some(current) = current else {
        let mut new = desired.clone();
        pacer_runtime::api::prepare_new(&mut new);
        return (Applied::Created, new);
    };
    let labels = desired.meta().labels.clone();
    if spec_of(&current) == spec_of(desired) && current.meta().labels == labels {
        return (Applied::Unchanged, current);
    }
    let mut next = current.clone();
    set_spec(&mut next, spec_of(desired));
    next.meta_mut().labels = labels;
    next.meta_mut().generation = Some(current.meta().generation.unwrap_or(1) + 1);
    (Applied::Configured, next)
}

/// Creates the record or replaces its spec and labels (status kept); unchanged ones are not
/// written. A write that loses a race (another client created or changed the record first,
/// or a retried create had in fact landed) is decided again on a fresh read, so racing
/// applies of one manifest all succeed.
async fn apply_record<K, S>(
    api: &Api<K>,
    desired: K,
    spec_of: impl Fn(&K) -> S,
    set_spec: impl Fn(&mut K, S),
) -> Result<Response, ApiError>
where
    K: Record,
    S: PartialEq,
{
    let name = desired.key();
    let (applied, object) = pacer_runtime::retry::on_conflict(|| async {
        let current = api.get(&name).await?;
        match decide(current, &desired, &spec_of, &set_spec) {
            (Applied::Created, mut new) => {
                // A transaction rather than `Api::create`, whose lost race is `AlreadyExists`:
                // here it is a conflict, read again like any other.
                let mut txn = Txn::new();
                txn.create(api, &new)?;
                let revision = api.client().commit(txn).await?;
                new.meta_mut().resource_version = Some(revision.to_string());
                Ok((Applied::Created, new))
            }
            (Applied::Configured, next) => Ok((Applied::Configured, api.replace(&next).await?)),
            unchanged => Ok::<_, ApiError>(unchanged),
        }
    })
    .await?;
    let status = if applied == Applied::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"result": applied, "object": object}))).into_response())
}

async fn apply_role(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match parse(&body, &name)? {
        Manifest::Role(role) => {
            apply_record(
                &s.roles,
                role,
                |r: &Role| r.spec.clone(),
                |r, spec| r.spec = spec,
            )
            .await
        }
        other => Err(wrong_kind(&other, "Role")),
    }
}

async fn apply_job(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    match parse(&body, &name)? {
        Manifest::Job(job) => {
            crate::policy::admit_job(&s, &name, &job.spec).await?;
            apply_record(
                &s.jobs,
                job,
                |j: &Job| j.spec.clone(),
                |j, spec| j.spec = spec,
            )
            .await
        }
        other => Err(wrong_kind(&other, "Job")),
    }
}

async fn delete_simple<K: Record>(api: Api<K>, name: String) -> Result<Response, ApiError> {
    let kind = K::kind(&()).into_owned();
    if api.delete(&name).await? {
        Ok(Json(json!({"result": "deleted", "name": name})).into_response())
    } else {
        Err(ApiError::NotFound(format!(
            "{kind} '{name}' does not exist"
        )))
    }
}

/// Deletes the job and its runs in one transaction; their tasks are stopped by the gc.
async fn delete_job(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let job = s
        .jobs
        .get(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Job '{name}' does not exist")))?;
    let runs = s.runs.list("").await?;
    let mut txn = Txn::new();
    txn.delete_unchanged(&s.jobs, &job);
    for run in runs.items.iter().filter(|r| r.spec.job == name) {
        txn.delete(&s.runs, &run.key());
    }
    s.jobs.client().commit(txn).await?;
    Ok(Json(json!({"result": "deleted", "name": name})).into_response())
}

/// `POST /jobs/{name}/runs`: starts a run now (Metronome's `POST /v1/jobs/{id}/runs`).
async fn start_run(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let run = pacer_runtime::retry::on_conflict(|| async {
        let job = s
            .jobs
            .get(&name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("Job '{name}' does not exist")))?;
        let (updated, mut run) = next_run(&job, "manual");
        pacer_runtime::api::prepare_new(&mut run);
        let mut txn = Txn::new();
        txn.unchanged(&s.jobs, &job)
            .put(&s.jobs, &updated)?
            .create(&s.runs, &run)?;
        s.jobs.client().commit(txn).await?;
        Ok::<_, ApiError>(run)
    })
    .await?;
    Ok((StatusCode::CREATED, Json::<JobRun>(run)).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
struct DrainBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `PUT /nodes/{name}/drain`: no new tasks on the node; its apps' tasks move elsewhere.
async fn drain(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: DrainBody = if body.is_empty() {
        DrainBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"reason\": \"...\"}}: {e}")))?
    };
    let mut record = pacer_crd::Drain::new(
        &name,
        pacer_crd::DrainSpec {
            reason: body.reason,
        },
    );
    pacer_runtime::api::prepare_new(&mut record);
    apply_record(
        &s.drains,
        record,
        |d: &pacer_crd::Drain| d.spec.clone(),
        |d, spec| d.spec = spec,
    )
    .await
}

async fn undrain(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    delete_simple(s.drains, name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use pacer_crd::RoleSpec;

    fn role(weight: f64) -> Role {
        Role::new(
            "analytics",
            RoleSpec {
                weight,
                ..RoleSpec::default()
            },
        )
    }

    fn decide_role(current: Option<Role>, desired: &Role) -> (Applied, Role) {
        decide(
            current,
            desired,
            |r: &Role| r.spec.clone(),
            |r, spec| r.spec = spec,
        )
    }

    #[test]
    fn a_new_record_is_created_at_generation_one() {
        let (applied, new) = decide_role(None, &role(2.0));
        assert_eq!(applied, Applied::Created);
        assert_eq!(new.metadata.generation, Some(1));
        assert!(new.metadata.uid.is_some());
    }

    #[test]
    fn the_same_spec_and_labels_leave_the_stored_record_as_it_is() {
        let mut stored = role(2.0);
        stored.metadata.resource_version = Some("7".into());
        let (applied, kept) = decide_role(Some(stored.clone()), &role(2.0));
        assert_eq!((applied, kept), (Applied::Unchanged, stored));
    }

    #[test]
    fn a_new_spec_or_labels_configure_the_next_generation_of_the_stored_record() {
        let mut stored = role(1.0);
        stored.metadata.resource_version = Some("7".into());
        stored.metadata.generation = Some(3);
        let (applied, next) = decide_role(Some(stored.clone()), &role(2.0));
        assert_eq!(applied, Applied::Configured);
        assert_eq!(next.spec.weight, 2.0);
        assert_eq!(next.metadata.generation, Some(4));
        assert_eq!(
            next.metadata.resource_version.as_deref(),
            Some("7"),
            "written over the version read"
        );

        let mut labelled = role(1.0);
        labelled.metadata.labels = Some([("team".to_string(), "data".to_string())].into());
        let (applied, next) = decide_role(Some(stored), &labelled);
        assert_eq!(applied, Applied::Configured);
        assert_eq!(next.metadata.labels, labelled.metadata.labels);
    }
}
