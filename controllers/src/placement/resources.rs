//! Filter: the node has the cpus, mem and disk one instance needs.

use pacer_crd::{AppSpec, Resources};

use super::{Candidate, Filter};

pub struct Fits;

impl Filter for Fits {
    fn name(&self) -> &'static str {
        "resources"
    }

    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        _all: &[Candidate],
    ) -> Result<(), String> {
        candidate
            .free
            .fits(&Resources::new(app.cpus, app.mem, app.disk))
    }
}
