//! `pacer token create|list|revoke`: API tokens, an admin's job.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use crate::client::ApiClient;

#[derive(Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it: it is shown this once, only its hash is kept.
    Create {
        /// The token's name (lowercase letters, digits, '-').
        name: String,
        /// read, write or admin.
        #[arg(long, default_value = "read")]
        role: String,
        /// Limit the token to apps under these ids (`/prod/*`); repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// How long the token works (`24h`, `30m`, `7d`); forever without it.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List tokens (names, roles, scopes, expiry; never the tokens).
    List,
    /// Revoke a token: every API replica refuses it within a second.
    Revoke { name: String },
}

pub async fn token(api: &ApiClient, args: TokenArgs) -> anyhow::Result<()> {
    match args.command {
        TokenCommand::Create {
            name,
            role,
            scopes,
            ttl,
        } => {
            let body = json!({"name": name, "role": role, "scopes": scopes, "ttl": ttl});
            let created = api.call(Method::POST, "/apitokens", Some(&body)).await?;
            println!("{}", created["token"].as_str().unwrap_or_default());
            eprintln!("token '{name}' ({role}) created; it is not shown again");
        }
        TokenCommand::List => {
            let list = api.get("/apitokens").await?;
            let mut table = crate::show::table(&["NAME", "ROLE", "SCOPES", "EXPIRES", "CREATED"]);
            for t in list["items"].as_array().into_iter().flatten() {
                let scopes: Vec<&str> = t["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str())
                    .collect();
                table.add_row([
                    t["name"].as_str().unwrap_or_default(),
                    t["role"].as_str().unwrap_or_default(),
                    &if scopes.is_empty() {
                        "*".to_string()
                    } else {
                        scopes.join(",")
                    },
                    t["expires"].as_str().unwrap_or("never"),
                    t["created"].as_str().unwrap_or_default(),
                ]);
            }
            println!("{table}");
        }
        TokenCommand::Revoke { name } => {
            api.call(Method::DELETE, &format!("/apitokens/{name}"), None)
                .await?;
            println!("token '{name}' revoked");
        }
    }
    Ok(())
}
