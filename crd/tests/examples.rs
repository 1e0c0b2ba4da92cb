//! Every manifest under `manifests/examples` reads and validates: the README points at them.

use pacer_crd::Manifest;
use pacer_crd::manifest::parse_documents;

#[test]
fn example_manifests_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        for doc in parse_documents(&text).expect("YAML") {
            match Manifest::from_value(doc) {
                Ok(m) => kinds.push(m.kind()),
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
    for kind in ["App", "Role", "Job"] {
        assert!(kinds.contains(&kind), "an example {kind}: {kinds:?}");
    }
}
