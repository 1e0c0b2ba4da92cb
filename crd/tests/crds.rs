//! The committed manifests/crds/*.yaml must be what the types generate (`make crds` rewrites them).

use std::path::PathBuf;

#[test]
fn committed_crds_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/crds");
    let update = std::env::var_os("PACER_WRITE_CRDS").is_some();
    let mut stale = Vec::new();
    for (file, yaml) in pacer_crd::crds::all() {
        let path = dir.join(&file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &yaml).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "manifests/crds is out of date for {stale:?}: run `make crds`"
    );
}
