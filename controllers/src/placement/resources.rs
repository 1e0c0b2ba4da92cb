//! Filter: the node has the cpus, mem and disk one instance needs, in the part of the offer
//! the app accepts (reserved for its role, unreserved, or both).

use pacer_crd::AppSpec;

use super::{Candidate, Filter, Reason, Rejection};

pub struct Fits;

impl Filter for Fits {
    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        _all: &[Candidate],
    ) -> Result<(), Rejection> {
        let need = app.resources();
        let free = candidate.usable(app);
        free.fits(&need).map_err(|message| {
            let reason = if need.cpus > free.cpus + 1e-9 {
                Reason::InsufficientCpus
            } else if need.mem > free.mem + 1e-9 {
                Reason::InsufficientMemory
            } else {
                Reason::InsufficientDisk
            };
            Rejection::new(reason, message)
        })
    }
}
