//! The cluster's certificates (rcgen): a CA, and certificates it signs for servers and
//! clients. `pacer up` makes what it needs on first start; `pacer certs` issues the rest for
//! a cluster of several machines. The layout is plain files, as kubeadm's and k3s's are:
//! `ca.crt`, `ca.key`, `<name>.crt`, `<name>.key` in one folder.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's subject: the same on every load, so what it signed names it as issuer.
const CA_NAME: &str = "pacer-ca";

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

/// Creates `dir/ca.crt` and `dir/ca.key` unless they exist.
pub fn ensure_ca(dir: &Path) -> anyhow::Result<()> {
    let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    if crt.is_file() && key.is_file() {
        return Ok(());
    }
    let pair = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&pair)?;
    crate::daemons::write_private(&key, &pair.serialize_pem())?;
    std::fs::write(&crt, cert.pem()).with_context(|| format!("writing {}", crt.display()))?;
    tracing::info!(dir = %dir.display(), "created the cluster CA");
    Ok(())
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Usage {
    /// A server's (the API, an agent's endpoint, an etcd member): host names and addresses.
    Server,
    /// A client's (etcd clients: servers, agents, an admin's etcdctl); its name is the
    /// common name etcd takes as the user.
    Client,
    /// Both (an etcd member talks to its peers as either).
    Both,
}

/// Issues `dir/<name>.crt` and `.key` signed by the CA in `dir`, unless they exist.
pub fn ensure_cert(
    dir: &Path,
    name: &str,
    hosts: &[String],
    usage: Usage,
) -> anyhow::Result<PathBuf> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    if crt.is_file() && key.is_file() {
        return Ok(crt);
    }
    let ca_key = std::fs::read_to_string(dir.join("ca.key")).with_context(|| {
        format!(
            "reading {}/ca.key (create the CA first: pacer certs ca)",
            dir.display()
        )
    })?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca_key)?);
    let mut params = CertificateParams::new(hosts.to_vec())
        .with_context(|| format!("the host names {hosts:?}"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Both => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let pair = KeyPair::generate()?;
    let cert = params.signed_by(&pair, &issuer)?;
    crate::daemons::write_private(&key, &pair.serialize_pem())?;
    std::fs::write(&crt, cert.pem()).with_context(|| format!("writing {}", crt.display()))?;
    Ok(crt)
}

/// The names a local server's certificate holds: loopback, this machine's name, and the
/// address it listens on when that is a particular one.
pub fn local_hosts(listen: std::net::SocketAddr) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        hosts.push(name.trim().to_string());
    }
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        hosts.push(listen.ip().to_string());
    }
    hosts.dedup();
    hosts
}

#[derive(Args)]
pub struct CertsArgs {
    /// The folder of the CA and the certificates.
    #[arg(long, default_value = ".pacer", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create the cluster CA (`ca.crt`, `ca.key`) unless it exists. Keep `ca.key` on one
    /// machine; hand out `ca.crt`.
    Ca,
    /// Issue `<name>.crt` and `<name>.key`, signed by the CA.
    Issue {
        /// The certificate's name (its common name: etcd's user for a client certificate).
        name: String,
        /// Host names and addresses the certificate is valid for (servers), comma-separated.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        #[arg(long, value_enum, default_value = "server")]
        usage: Usage,
    },
}

pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Ca => ensure_ca(&args.dir)?,
        CertsCommand::Issue { name, hosts, usage } => {
            if usage != Usage::Client && hosts.is_empty() {
                bail!(
                    "--hosts: a server certificate needs the names and addresses it is reached at"
                );
            }
            let crt = ensure_cert(&args.dir, &name, &hosts, usage)?;
            println!("{}", crt.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_signed_by_the_ca_of_its_folder_and_kept_once_made() {
        let dir = tempfile::tempdir().expect("a temp dir");
        ensure_ca(dir.path()).expect("a CA");
        let ca = std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt");
        ensure_ca(dir.path()).expect("again");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.crt")).expect("ca.crt"),
            ca,
            "the CA is kept"
        );
        let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let crt = ensure_cert(dir.path(), "server", &hosts, Usage::Server).expect("a certificate");
        let pem = std::fs::read_to_string(&crt).expect("server.crt");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "keys are their owner's only");
    }
}
