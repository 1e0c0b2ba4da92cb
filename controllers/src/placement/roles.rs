//! Filter: the node offers resources to the app's role, of the kind the app accepts
//! (`acceptedResourceRoles`: `*` for unreserved, the role's name for its reservation).

use pacer_crd::AppSpec;

use super::{Candidate, Filter, Reason, Rejection};

pub struct Offered;

impl Filter for Offered {
    fn check(
        &self,
        app: &AppSpec,
        candidate: &Candidate,
        _all: &[Candidate],
    ) -> Result<(), Rejection> {
        if candidate.offer.is_none() {
            let to = if candidate.other_roles.is_empty() {
                "no role".to_string()
            } else {
                format!("role(s) {}", candidate.other_roles.join(", "))
            };
            return Err(Rejection::new(
                Reason::UnfulfilledRole,
                format!("offered to {to}, not to role {}", app.role),
            ));
        }
        let only_reserved = app
            .accepted_resource_roles
            .as_ref()
            .is_some_and(|roles| !roles.iter().any(|r| r == "*"));
        if only_reserved && candidate.reserved.is_empty() {
            return Err(Rejection::new(
                Reason::NoCorrespondingReservationFound,
                format!("nothing reserved for role {} is free here", app.role),
            ));
        }
        Ok(())
    }
}
