//! etcd's own access control for Pacer's identities. With `--client-cert-auth` a client's
//! certificate common name is its etcd user; users get roles over key ranges:
//!
//! - `root`: everything (an admin's `etcdctl`, this setup itself);
//! - `pacer-server`: read and write every record under the prefix (apiservers, controllers);
//! - `node-<name>`: read every record, write only its own Node record and the tasks bound to
//!   it (`<prefix>tasks/<name>/`), like Kubernetes' NodeRestriction.

use crate::client::{EtcdTls, connect_options};

/// The etcd user (and certificate common name) of the apiservers and controllers.
pub const SERVER_USER: &str = "pacer-server";
/// The etcd user of an admin (`root` is etcd's superuser).
pub const ROOT_USER: &str = "root";

/// The etcd user of node `name`'s agent.
pub fn node_user(name: &str) -> String {
    format!("node-{name}")
}

async fn root_client(
    endpoints: &[String],
    root: &EtcdTls,
) -> Result<etcd_client::Client, etcd_client::Error> {
    crate::install_crypto();
    let options = connect_options(Some(root)).map_err(etcd_client::Error::IoError)?;
    etcd_client::Client::connect(endpoints, Some(options)).await
}

/// An "already exists" answer is what a second setup gets: fine.
fn tolerate_existing<T>(result: Result<T, etcd_client::Error>) -> Result<(), etcd_client::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(e),
    }
}

async fn user_with_role(
    etcd: &mut etcd_client::Client,
    user: &str,
    permissions: Vec<etcd_client::Permission>,
) -> Result<(), etcd_client::Error> {
    let no_password = Some(etcd_client::UserAddOptions::new().with_no_pwd());
    tolerate_existing(etcd.role_add(user).await)?;
    for permission in permissions {
        etcd.role_grant_permission(user, permission).await?;
    }
    tolerate_existing(etcd.user_add(user, "", no_password).await)?;
    etcd.user_grant_role(user, user).await?;
    Ok(())
}

/// Creates the root and server users and turns authentication on; run again, it changes
/// nothing. `root` must be a certificate whose common name is `root`.
pub async fn enable(
    endpoints: &[String],
    root: &EtcdTls,
    prefix: &str,
) -> Result<(), etcd_client::Error> {
    let mut etcd = root_client(endpoints, root).await?;
    let no_password = Some(etcd_client::UserAddOptions::new().with_no_pwd());
    tolerate_existing(etcd.user_add(ROOT_USER, "", no_password).await)?;
    tolerate_existing(etcd.role_add(ROOT_USER).await)?;
    etcd.user_grant_role(ROOT_USER, ROOT_USER).await?;
    let prefix = crate::client::normalize_prefix(prefix);
    user_with_role(
        &mut etcd,
        SERVER_USER,
        vec![etcd_client::Permission::read_write(prefix.as_str()).with_prefix()],
    )
    .await?;
    etcd.auth_enable().await?;
    Ok(())
}

/// Lets the agent of node `name` (a certificate named [`node_user`]) read the cluster and
/// write its own records only.
pub async fn grant_node(
    endpoints: &[String],
    root: &EtcdTls,
    prefix: &str,
    name: &str,
) -> Result<(), etcd_client::Error> {
    let mut etcd = root_client(endpoints, root).await?;
    let prefix = crate::client::normalize_prefix(prefix);
    let permissions = vec![
        etcd_client::Permission::read(prefix.as_str()).with_prefix(),
        etcd_client::Permission::read_write(format!("{prefix}nodes/{name}")),
        etcd_client::Permission::read_write(format!("{prefix}tasks/{name}/")).with_prefix(),
    ];
    user_with_role(&mut etcd, &node_user(name), permissions).await
}
