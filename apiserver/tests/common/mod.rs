//! An in-process apiserver on a fresh etcd, shared by the API tests.

use pacer_apiserver::{ApiState, serve};
use pacer_runtime::testing::TestEtcd;

pub struct Server {
    /// `http://127.0.0.1:PORT` followed by the prefix the tests asked for.
    pub base: String,
    pub http: reqwest::Client,
    _etcd: TestEtcd,
}

/// Serves the whole router on a free port; paths the tests give are appended to `prefix`.
pub async fn server(prefix: &str) -> Server {
    let etcd = TestEtcd::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let base = format!(
        "http://{}{prefix}",
        listener.local_addr().expect("a bound address")
    );
    tokio::spawn(serve(
        listener,
        ApiState::new(&etcd.client),
        std::future::pending(),
    ));
    Server {
        base,
        http: reqwest::Client::new(),
        _etcd: etcd,
    }
}
