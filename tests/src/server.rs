//! Helpers for tests of the HTTP server: the router driven in-process without a socket
//! ([`TestApp`]) and the real `runledger serve` process on a port-0 socket ([`ServerProcess`]).

use crate::{Backend, Cli, PostgresDatabase, plugins_dir, test_plugins_dir};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use runledger::config::Config;
use runledger::engine::Engine;
use runledger::runtime::{AllocatorChoice, PluginRegistry, Runtime, RuntimeSettings};
use runledger::server::{
    AccessMode, AppState, DEFAULT_MAX_BODY_BYTES, DEFAULT_POLL_BUDGET, ServerSettings,
};
use runledger::store::Store;
use runledger::store::artifacts::ArtifactStore;
use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt as _;

/// Maximum wait for an expected line in a server's log.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// The server's router over a fresh database and data directory, driven without a socket.
pub struct TestApp {
    /// The router, as `runledger serve` builds it.
    pub router: Router,
    /// Its state, for checks straight against the store.
    pub state: AppState,
    _data_dir: tempfile::TempDir,
    _database: Option<PostgresDatabase>,
}

/// A response read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: axum::http::HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as JSON; panics with the text when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "response {} is not JSON ({error}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status is `expected` and the body has the API's error shape, and returns
    /// the error object.
    pub fn expect_error(&self, expected: StatusCode) -> serde_json::Value {
        assert_eq!(
            self.status,
            expected,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        let error = body["error"].clone();
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "error shape missing: {body}"
        );
        error
    }
}

impl TestApp {
    /// Opens a fresh store on `backend` and builds the router in `mode`.
    pub async fn new(backend: Backend, mode: AccessMode) -> Self {
        let data_dir = tempfile::tempdir().expect("temporary data directory");
        let database = (backend == Backend::Postgres).then(PostgresDatabase::create);
        let database_url = database.as_ref().map(PostgresDatabase::url);
        let config = Config::resolve(
            Some(data_dir.path().to_owned()),
            vec![plugins_dir(), test_plugins_dir()],
            database_url.clone(),
        );
        let store = match &database_url {
            Some(url) => {
                let store = Store::connect(url).await.expect("PostgreSQL connects");
                store.migrate().await.expect("migrations apply");
                store
            }
            None => Store::open_sqlite(data_dir.path())
                .await
                .expect("SQLite opens"),
        };
        let artifacts = ArtifactStore::open(config.artifacts_dir()).expect("artifact store");
        let engine = Engine::new(Arc::new(small_runtime(&config)), store, artifacts);
        let registry = PluginRegistry::scan(&config.plugin_dirs);
        let settings = ServerSettings {
            bind: "127.0.0.1:0".parse().expect("address"),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            parallelism: 2,
            poll_budget: DEFAULT_POLL_BUDGET,
        };
        let state = AppState::new(config, settings, engine, registry, mode);
        Self {
            router: runledger::server::app(state.clone()),
            state,
            _data_dir: data_dir,
            _database: database,
        }
    }

    /// Sends `request` through the router and reads the whole response.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("response body")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Sends a GET.
    pub async fn get(&self, uri: &str) -> TestResponse {
        self.send(Request::get(uri).body(Body::empty()).expect("request"))
            .await
    }

    /// Sends `method` with a JSON body.
    pub async fn send_json(
        &self,
        method: &str,
        uri: &str,
        body: &serde_json::Value,
    ) -> TestResponse {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        self.send(request).await
    }

    /// Sends a POST with a JSON body.
    pub async fn post_json(&self, uri: &str, body: &serde_json::Value) -> TestResponse {
        self.send_json("POST", uri, body).await
    }

    /// Sends `method` with `Authorization: Bearer TOKEN` and, when given, a JSON body.
    pub async fn send_as(
        &self,
        token: &str,
        method: &str,
        uri: &str,
        body: Option<&serde_json::Value>,
    ) -> TestResponse {
        let builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        self.send(request.expect("request")).await
    }

    /// Creates an API token called `name` with `role` in the store and returns the token.
    pub async fn create_token(&self, name: &str, role: &str) -> String {
        let (_, token) = self
            .state
            .store()
            .create_token(name, role)
            .await
            .unwrap_or_else(|error| panic!("token {name} is created: {error}"));
        token
    }
}

/// A runtime with a small instance pool, so many test apps fit in the address space.
fn small_runtime(config: &Config) -> Runtime {
    let settings = RuntimeSettings {
        pool_instances: 4,
        allocator: AllocatorChoice::OnDemand,
        ..config.runtime_settings()
    };
    Runtime::new(settings)
}

/// `runledger serve` running as a subprocess on a port-0 socket. It is killed when dropped.
pub struct ServerProcess {
    child: Child,
    address: String,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `runledger serve --bind 127.0.0.1:0 EXTRA...` with the data directory and database
    /// of `cli`, and waits until it listens.
    pub fn start(cli: &Cli, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = cli
            .command(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runledger serve starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let address = read_address(stderr, log.clone());
        let Some(address) = address else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "runledger serve did not announce its address; its log:\n{}",
                log.lock().expect("log lock")
            );
        };
        Self {
            child,
            address,
            log,
        }
    }

    /// The base URL, such as `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The server's process id, for reading its /proc entries.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits up to [`LOG_WAIT`] for the log to contain every one of `lines`, then returns it.
    /// A thread reads the server's stderr, so a line written before a response may reach the
    /// log after the client has the response.
    pub fn log_containing(&self, lines: &[&str]) -> String {
        let deadline = std::time::Instant::now() + LOG_WAIT;
        loop {
            let log = self.log();
            let complete = lines.iter().all(|line| log.contains(line));
            if complete || std::time::Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        wait_with_timeout(&mut self.child, Duration::from_secs(30))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child`, killing it after `limit`.
fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for runledger serve") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("runledger serve did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads stderr until the `listening on http://ADDR` line, then keeps copying it into `log` on
/// a thread, so the pipe never fills.
fn read_address(stderr: std::process::ChildStderr, log: Arc<Mutex<String>>) -> Option<String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            log.lock().expect("log lock").push_str(&line);
            log.lock().expect("log lock").push('\n');
            if let Some(rest) = line.split("listening on http://").nth(1)
                && let Some(sender) = sender.take()
            {
                let address = rest.split_whitespace().next().unwrap_or_default();
                let _ = sender.send(address.to_owned());
            }
        }
    });
    receiver.recv_timeout(Duration::from_secs(120)).ok()
}
