//! Real Marathon app definitions are accepted as they are and survive a round trip.

use std::path::PathBuf;

use pacer_crd::marathon::{AppRuntime, app_from_marathon, app_to_marathon};
use pacer_crd::{App, AppSpec};
use serde_json::Value;

fn fixture(path: &str) -> Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/marathon-fixtures")
        .join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (../shared must sit beside the checkout)",
            file.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// Converts, writes back as Marathon would, and converts again: nothing may change.
fn round_trip(app: &Value) -> AppSpec {
    let id = app["id"].as_str().unwrap_or("?");
    let (parsed_id, spec) = app_from_marathon(app, None).unwrap_or_else(|e| panic!("{id}: {e}"));
    let out = app_to_marathon(
        &App::new(&parsed_id.name(), spec.clone()),
        &AppRuntime::default(),
    );
    assert_eq!(out["id"], parsed_id.path());
    let (_, again) = app_from_marathon(&out, None).unwrap_or_else(|e| panic!("{id} echoed: {e}"));
    assert_eq!(again, spec, "{id} changed on the way back");
    spec
}

#[test]
fn hundred_real_apps_are_accepted_and_echoed() {
    let doc = fixture("marathon-benchmark-real/155_100.json");
    let apps = doc["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 100);
    for app in apps {
        let spec = round_trip(app);
        assert_eq!(spec.instances, app["instances"].as_i64().unwrap());
        assert_eq!(spec.cpus, app["cpus"].as_f64().unwrap());
    }
}

#[test]
fn request_examples_of_the_api_spec_are_accepted() {
    round_trip(&fixture("marathon-docs-articles/request-app-simple.json"));
    for app in fixture("marathon-rest-api/v2/examples/apps_create.json")
        .as_array()
        .into_iter()
        .flatten()
    {
        round_trip(app);
    }
}

/// The spec's big hand-written example sets both `cmd` and `args` (and env secrets), which
/// Marathon's own validation refuses too: every problem is reported with its path.
#[test]
fn the_kitchen_sink_example_is_refused_with_paths() {
    let err =
        app_from_marathon(&fixture("marathon-rest-api/v2/examples/app.json"), None).unwrap_err();
    assert_eq!(err.0[0].path, "/env/PASSWORD", "{err}");
}
