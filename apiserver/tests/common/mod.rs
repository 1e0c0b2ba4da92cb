//! An in-process apiserver on a fresh etcd, shared by the API tests. It authenticates as
//! `pacer up` does; the tests' client carries an admin token.

#![allow(dead_code)]

use pacer_apiserver::{ApiState, serve};
use pacer_runtime::testing::TestEtcd;

pub struct Server {
    /// `http://127.0.0.1:PORT` followed by the prefix the tests asked for.
    pub base: String,
    /// `http://127.0.0.1:PORT`.
    pub root: String,
    /// A client that sends the admin token.
    pub http: reqwest::Client,
    pub admin_token: String,
    pub etcd: TestEtcd,
}

/// Serves the whole router on a free port; paths the tests give are appended to `prefix`.
pub async fn server(prefix: &str) -> Server {
    pacer_runtime::install_crypto();
    let etcd = TestEtcd::start().await;
    let (admin_token, _) = pacer_apiserver::auth::new_token("admin");
    pacer_apiserver::ensure_admin_token(&pacer_runtime::Api::new(&etcd.client), &admin_token)
        .await
        .expect("the admin token is stored");
    let root = replica(&etcd).await;
    Server {
        base: format!("{root}{prefix}"),
        root,
        http: client_with(&admin_token),
        admin_token,
        etcd,
    }
}

/// Another API replica on the same etcd: its `http://127.0.0.1:PORT`.
pub async fn replica(etcd: &TestEtcd) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let root = format!("http://{}", listener.local_addr().expect("a bound address"));
    tokio::spawn(serve(
        listener,
        ApiState::new(&etcd.client),
        std::future::pending(),
    ));
    root
}

/// A client sending `Authorization: Bearer <token>` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    pacer_apiserver::tls::client(None, Some(token), std::time::Duration::from_secs(60))
        .expect("a client")
}
