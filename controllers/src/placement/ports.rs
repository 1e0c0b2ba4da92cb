//! Filter: the node has the host ports one instance asks for (fixed ones free, enough for the rest).

use pacer_crd::AppSpec;
use pacer_crd::node::pick_ports;

use super::{Candidate, Filter, Reason, Rejection};

pub struct Free;

impl Filter for Free {
    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        _all: &[Candidate],
    ) -> Result<(), Rejection> {
        pick_ports(&candidate.ports, &app.requested_host_ports())
            .map(|_| ())
            .map_err(|why| Rejection::new(Reason::InsufficientPorts, why))
    }
}
