//! Real Marathon app definitions deserialize into AppSpec where they use fields Pacer models.

use std::path::PathBuf;

use pacer_crd::AppSpec;
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/marathon-fixtures")
}

/// Drops what the App record does not model yet (read-only fields and later issues' fields).
fn modelled(mut app: Value) -> Value {
    let keep = [
        "cmd",
        "args",
        "env",
        "instances",
        "cpus",
        "mem",
        "disk",
        "labels",
        "container",
        "constraints",
        "backoffSeconds",
        "backoffFactor",
        "maxLaunchDelaySeconds",
        "killSelection",
        "dependencies",
        "user",
        "requirePorts",
        "taskKillGracePeriodSeconds",
    ];
    let map = app.as_object_mut().unwrap();
    map.retain(|k, _| keep.contains(&k.as_str()));
    if let Some(container) = map.get_mut("container").and_then(Value::as_object_mut) {
        container
            .retain(|k, _| ["type", "docker", "volumes", "portMappings"].contains(&k.as_str()));
        if let Some(docker) = container.get_mut("docker").and_then(Value::as_object_mut) {
            docker.retain(|k, _| {
                ["image", "privileged", "parameters", "forcePullImage"].contains(&k.as_str())
            });
        }
        if let Some(vols) = container.get_mut("volumes").and_then(Value::as_array_mut) {
            vols.retain(|v| v.get("hostPath").is_some());
        }
    }
    if let Some(env) = map.get_mut("env").and_then(Value::as_object_mut) {
        env.retain(|_, v| v.is_string());
    }
    app
}

#[test]
fn hundred_real_apps_parse_and_validate() {
    let path = fixtures().join("marathon-benchmark-real/155_100.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        panic!(
            "fixture {} is missing: ../shared must sit beside the checkout",
            path.display()
        );
    };
    let doc: Value = serde_json::from_str(&text).unwrap();
    let apps = doc["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 100);
    for app in apps {
        let id = app["id"].as_str().unwrap();
        pacer_crd::AppId::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        let spec: AppSpec = serde_path_to_error::deserialize(modelled(app.clone()))
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let problems = spec.validate();
        assert!(problems.is_empty(), "{id}: {problems:?}");
    }
}
