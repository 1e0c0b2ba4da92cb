//! Where the CLI finds its server and credentials, as kubectl finds its kubeconfig:
//! `PACER_CONFIG`, then `.pacer/config` (what `pacer up` writes beside its data), then
//! `~/.config/pacer/config`; `--server`, `PACER_SERVER`, `PACER_TOKEN` and `PACER_CACERT`
//! override what the file says.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

/// A client configuration file (YAML).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://127.0.0.1:8080`.
    pub server: String,
    /// The API token sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The CA certificate the server's certificate is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// An admin's way into etcd (for `etcdctl`, through `pacer config env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdConfig>,
}

/// etcd's endpoints and an admin identity, as etcdctl takes them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub endpoints: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EtcdConfig {
    /// The `root` identity `pacer up` keeps in `dir`.
    pub fn admin(dir: &Path, endpoints: &str) -> EtcdConfig {
        let user = pacer_runtime::etcd_auth::ROOT_USER;
        EtcdConfig {
            endpoints: endpoints.to_string(),
            ca: dir.join("ca.crt"),
            cert: dir.join(format!("{user}.crt")),
            key: dir.join(format!("{user}.key")),
        }
    }
}

/// The server a CLI without configuration talks to.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

impl ClientConfig {
    /// Writes the file, readable by its owner only (it holds a token).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_saphyr::to_string(self).context("serializing the client config")?;
        crate::daemons::write_private(path, &text)
    }

    fn read(path: &Path) -> anyhow::Result<ClientConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_saphyr::from_str(&text)
            .with_context(|| format!("{} is not a Pacer client config", path.display()))
    }

    /// The configuration in effect: the first file found, then the overrides.
    pub fn resolve(server_flag: Option<&str>) -> anyhow::Result<ClientConfig> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = match env("PACER_CONFIG") {
            Some(path) => Some(ClientConfig::read(Path::new(&path))?),
            None => candidates()
                .into_iter()
                .find(|p| p.is_file())
                .map(|p| ClientConfig::read(&p))
                .transpose()?,
        };
        let mut config = file.unwrap_or_else(|| ClientConfig {
            server: DEFAULT_SERVER.into(),
            ..ClientConfig::default()
        });
        if let Some(server) = server_flag
            .map(str::to_string)
            .or_else(|| env("PACER_SERVER"))
        {
            config.server = server;
        }
        if let Some(token) = env("PACER_TOKEN") {
            config.token = Some(token);
        }
        if let Some(ca) = env("PACER_CACERT") {
            config.ca = Some(PathBuf::from(ca));
        }
        Ok(config)
    }
}

/// The files looked for when `PACER_CONFIG` is not set, in order.
fn candidates() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(".pacer/config")];
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".config/pacer/config"));
    }
    paths
}

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print `export PACER_SERVER=... PACER_TOKEN=... PACER_CACERT=...` (and `ETCDCTL_*` for
    /// the etcd of `pacer up`) for a shell: `eval "$(pacer config env)"`, then curl with
    /// `-H "Authorization: Bearer $PACER_TOKEN"`, or `etcdctl get --prefix /pacer/`.
    Env,
}

pub fn config(config: &ClientConfig, args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Env => {
            print!("{}", env_lines(config));
            Ok(())
        }
    }
}

/// The shell lines of `pacer config env`, values quoted for sh.
fn env_lines(config: &ClientConfig) -> String {
    let mut vars = vec![("PACER_SERVER", config.server.clone())];
    if let Some(token) = &config.token {
        vars.push(("PACER_TOKEN", token.clone()));
    }
    if let Some(ca) = &config.ca {
        let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
        vars.push(("PACER_CACERT", ca.display().to_string()));
    }
    if let Some(etcd) = &config.etcd {
        vars.push(("ETCDCTL_ENDPOINTS", etcd.endpoints.clone()));
        vars.push(("ETCDCTL_CACERT", etcd.ca.display().to_string()));
        vars.push(("ETCDCTL_CERT", etcd.cert.display().to_string()));
        vars.push(("ETCDCTL_KEY", etcd.key.display().to_string()));
    }
    vars.iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', r"'\''")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_quote_for_the_shell() {
        let config = ClientConfig {
            server: "https://127.0.0.1:8080".into(),
            token: Some("admin.ab'c".into()),
            ca: Some(PathBuf::from("/x/ca.crt")),
            etcd: None,
        };
        assert_eq!(
            env_lines(&config),
            "export PACER_SERVER='https://127.0.0.1:8080'\nexport PACER_TOKEN='admin.ab'\\''c'\nexport PACER_CACERT='/x/ca.crt'\n"
        );
    }

    #[test]
    fn a_written_config_reads_back() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("config");
        let config = ClientConfig {
            server: "https://h:8080".into(),
            token: Some("admin.x".into()),
            ca: None,
            etcd: Some(EtcdConfig::admin(Path::new("/d"), "https://127.0.0.1:2379")),
        };
        config.write(&path).expect("written");
        assert_eq!(ClientConfig::read(&path).expect("read"), config);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "only its owner may read a file holding a token"
        );
    }
}
