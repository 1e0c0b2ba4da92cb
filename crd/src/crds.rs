//! CustomResourceDefinition YAML for every kind, written to manifests/crds by `make crds`.

use crate::{
    ApiToken, App, AppVersion, CustomResourceExt, Deployment, Drain, EventSubscription, Job,
    JobRun, Node, Offer, Policy, Role, Task,
};

/// `(file name, YAML)` for each kind, in a stable order.
pub fn all() -> Vec<(String, String)> {
    let crds = [
        App::crd(),
        Task::crd(),
        Node::crd(),
        Offer::crd(),
        Role::crd(),
        Drain::crd(),
        Job::crd(),
        JobRun::crd(),
        Deployment::crd(),
        AppVersion::crd(),
        EventSubscription::crd(),
        Policy::crd(),
        ApiToken::crd(),
    ];
    crds.iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.spec.names.plural);
            let yaml = serde_saphyr::to_string(crd).expect("a CRD serializes to YAML");
            (name, yaml)
        })
        .collect()
}
