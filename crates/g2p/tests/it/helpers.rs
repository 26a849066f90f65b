//! `TestApp`: the real application (assembled by `g2p::App::start`, exactly as `main` does) on
//! a free port, with a fresh database, and keys for each role.

#![allow(dead_code)]

use g2p::{App, Config};
use g2p_domain::Role;
use g2p_store::Backend;
use g2p_store::audit::Actor;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

pub struct TestApp {
    pub app: App,
    /// The app's configuration (a second node on the same database starts from it).
    pub cfg: Config,
    pub backend: Backend,
    pub base: String,
    pub client: Client,
    pub admin: String,
    pub registrar: String,
    pub viewer: String,
    pub connector: String,
}

/// The fixed key for connector secrets of PostgreSQL test apps (64 hex characters).
pub const TEST_SECRET_KEY: &str =
    "6732702d746573742d6b65792d6e6f742d666f722d70726f64756374696f6e21";

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        g2p::telemetry::init_logging("text", false);
    }
}

impl TestApp {
    /// The application on a new database of the given backend; `None` when PostgreSQL is not
    /// reachable and not required (see `g2p_testkit`).
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        init_logs();
        let (database_url, secret_key) = match backend {
            // No key: the app makes `g2p-secret.key` next to the database, as in production.
            Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("g2p_it_{}.sqlite", uuid::Uuid::new_v4().simple()));
                (format!("sqlite://{}", path.display()), None)
            }
            // PostgreSQL requires a configured key (every node shares it).
            Backend::Postgres => (
                g2p_testkit::pg_database_url().await?,
                Some(TEST_SECRET_KEY.into()),
            ),
        };
        let cfg = Config {
            database_url,
            secret_key,
            listen: "127.0.0.1:0".into(),
            // Tests run jobs deterministically with `drain_jobs` instead of a background loop.
            run_worker: false,
            ..Config::default()
        };
        let app = App::start(&cfg, g2p::telemetry::init_metrics())
            .await
            .expect("app starts");
        let actor = Actor::system("test");
        let mut keys = Vec::new();
        for role in [Role::Admin, Role::Registrar, Role::Viewer, Role::Connector] {
            let (_, key) = app
                .store
                .create_api_key(&format!("test-{role}"), role, &actor)
                .await
                .expect("key");
            keys.push(key);
        }
        let base = app.url();
        Some(TestApp {
            app,
            cfg,
            backend,
            base,
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            connector: keys.pop().expect("key"),
            viewer: keys.pop().expect("key"),
            registrar: keys.pop().expect("key"),
            admin: keys.pop().expect("key"),
        })
    }

    /// One app per backend: SQLite always, PostgreSQL when reachable (required in CI).
    pub async fn all() -> Vec<TestApp> {
        let mut v = Vec::new();
        for b in [Backend::Sqlite, Backend::Postgres] {
            if let Some(a) = TestApp::spawn(b).await {
                v.push(a);
            }
        }
        v
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str, key: Option<&str>) -> RequestBuilder {
        let rb = self.client.request(method, self.url(path));
        match key {
            Some(k) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Sends JSON as the given key and returns status and parsed body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.request(method, path, Some(key));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.expect("request sent");
        Self::parse(resp).await
    }

    pub async fn parse(resp: Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.call(Method::GET, path, key, None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, key, Some(body)).await
    }

    /// Registers an individual as the registrar and returns its id.
    pub async fn create_individual(&self, body: Value) -> i64 {
        let (status, v) = self
            .post("/api/v1/registrants", &self.registrar, body)
            .await;
        assert_eq!(status, 201, "create failed: {v}");
        v["id"].as_i64().expect("id")
    }

    /// Runs every due job to completion with the application's own job runner.
    pub async fn drain_jobs(&self) -> g2p_store::jobs::runner::DrainReport {
        g2p::job_runner(
            self.app.store.clone(),
            &Config::default(),
            self.app.state.secrets.clone(),
        )
        .expect("job runner")
        .drain_until_idle()
        .await
        .expect("drain jobs")
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}
