//! A running system for one test: receivers and workers in-process, with request helpers.

use std::time::Duration;

use reqwest::{header::HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{env::TestEnv, wait};

/// One in-process receiver.
pub struct RunningReceiver {
    /// `http://127.0.0.1:<port>` of the public listener.
    pub public_url: String,
    /// `http://127.0.0.1:<port>` of the admin listener.
    pub admin_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningReceiver {
    /// Starts a receiver with `config` and waits until `/readyz` says ready.
    pub async fn start(config: receiver::config::ReceiverConfig) -> Self {
        let receiver = Self::start_unready(config).await;
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", receiver.admin_url);
        wait::until("receiver ready", Duration::from_secs(30), || {
            let request = client.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == StatusCode::OK) }
        })
        .await;
        receiver
    }

    /// Starts a receiver and returns as soon as it listens (for tests of the not-ready state).
    pub async fn start_unready(config: receiver::config::ReceiverConfig) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let public_url = format!("http://{}", public.local_addr().expect("addr"));
        let admin_url = format!("http://{}", admin.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(receiver::run(config, public, admin, async {
            let _ = stopped.await;
        }));
        Self {
            public_url,
            admin_url,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts down gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

/// One in-process worker.
pub struct RunningWorker {
    /// `http://127.0.0.1:<port>` of its health listener.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningWorker {
    /// Starts a worker with `config`.
    pub async fn start(config: worker::config::WorkerConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker::run(config, listener, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            stop: Some(stop),
            task,
        }
    }

    /// Shuts down gracefully (finishing and acking the batch in hand).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await?
    }
}

/// An HTTP answer, decoded.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// JSON body (`Value::Null` if not JSON).
    pub body: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    /// `data` of a success envelope.
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// `error.code` of an error envelope.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// `error.field` of an error envelope.
    pub fn error_field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or("")
    }
}

/// A contest created for a test.
#[derive(Debug, Clone)]
pub struct TestContest {
    /// Its id.
    pub id: String,
    /// Its webhook secret.
    pub secret: String,
    /// The full admin answer.
    pub data: Value,
}

/// A running system for one test.
pub struct App {
    /// Names of this test's database and queues.
    pub env: TestEnv,
    /// The receivers (the first one is the default target of helpers).
    pub receivers: Vec<RunningReceiver>,
    /// The in-process workers.
    pub workers: Vec<RunningWorker>,
    /// HTTP client.
    pub http: reqwest::Client,
}

impl App {
    /// One receiver, no worker.
    pub async fn receiver_only() -> Self {
        let env = TestEnv::new();
        let receiver = RunningReceiver::start(env.receiver_config()).await;
        Self {
            env,
            receivers: vec![receiver],
            workers: Vec::new(),
            http: reqwest::Client::new(),
        }
    }

    /// One receiver and `workers` workers.
    pub async fn with_workers(workers: usize) -> Self {
        let mut app = Self::receiver_only().await;
        for _ in 0..workers {
            app.add_worker().await;
        }
        app
    }

    /// Starts one more in-process worker.
    pub async fn add_worker(&mut self) {
        let worker = RunningWorker::start(self.env.worker_config()).await;
        self.workers.push(worker);
    }

    /// Starts one more receiver on the same database and broker.
    pub async fn add_receiver(&mut self) -> &RunningReceiver {
        let receiver = RunningReceiver::start(self.env.receiver_config()).await;
        self.receivers.push(receiver);
        self.receivers.last().expect("just pushed")
    }

    /// The first receiver's public URL.
    pub fn public_url(&self) -> &str {
        &self.receivers[0].public_url
    }

    /// The first receiver's admin URL.
    pub fn admin_url(&self) -> &str {
        &self.receivers[0].admin_url
    }

    /// Calls the admin API of the first receiver with the test's token.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.admin_url()))
            .bearer_auth(&self.env.admin_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request.send().await.expect("admin request")).await
    }

    /// Creates a contest (`{"name": "Test"}` merged with `settings`).
    pub async fn create_contest(&self, settings: Value) -> TestContest {
        let mut body = json!({ "name": "Test contest" });
        if let (Some(target), Some(extra)) = (body.as_object_mut(), settings.as_object()) {
            for (key, value) in extra {
                target.insert(key.clone(), value.clone());
            }
        }
        let answer = self
            .admin(reqwest::Method::POST, "/api/contests", Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
        TestContest {
            id: answer.data()["id"].as_str().expect("id").to_owned(),
            secret: answer.data()["webhookSecret"]
                .as_str()
                .expect("secret")
                .to_owned(),
            data: answer.data().clone(),
        }
    }

    /// POSTs a raw body to a public path with extra headers.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}{path}", self.public_url()))
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::read(request.send().await.expect("webhook request")).await
    }

    /// POSTs a generic purchase with the contest's secret in `X-Webhook-Secret`.
    pub async fn purchase(&self, contest: &TestContest, body: Value) -> Answer {
        self.post(
            &format!("/api/webhooks/purchase/{}", contest.id),
            &[("x-webhook-secret", contest.secret.as_str())],
            body.to_string(),
        )
        .await
    }

    /// The purchase lookup.
    pub async fn lookup(
        &self,
        contest: &TestContest,
        order_id: &str,
        source: Option<&str>,
    ) -> Answer {
        let mut url = format!(
            "{}/api/webhooks/purchase/{}/{}",
            self.public_url(),
            contest.id,
            order_id
        );
        if let Some(source) = source {
            url.push_str(&format!("?source={source}"));
        }
        let request = self
            .http
            .get(url)
            .header("x-webhook-secret", &contest.secret);
        Answer::read(request.send().await.expect("lookup request")).await
    }

    /// Waits until the worker has recorded `order_id` and returns the lookup's `data`.
    pub async fn recorded(
        &self,
        contest: &TestContest,
        order_id: &str,
        source: Option<&str>,
    ) -> Value {
        wait::until("purchase recorded", Duration::from_secs(30), || async {
            let answer = self.lookup(contest, order_id, source).await;
            (answer.status == StatusCode::OK).then(|| answer.data().clone())
        })
        .await
    }

    /// The leaderboard's entries.
    pub async fn leaderboard(&self, contest: &TestContest) -> Vec<Value> {
        let answer = self
            .admin(
                reqwest::Method::GET,
                &format!("/api/contests/{}/leaderboard?limit=100", contest.id),
                None,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.data()["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Sum of all points in a contest, straight from the database.
    pub async fn total_points(&self, contest: &TestContest) -> i64 {
        let pool = self.env.pool().await;
        let total: Option<i64> =
            sqlx::query_scalar("SELECT SUM(points)::BIGINT FROM entries WHERE contest_id = $1")
                .bind(&contest.id)
                .fetch_one(&pool)
                .await
                .expect("sum points");
        pool.close().await;
        total.unwrap_or(0)
    }

    /// Number of recorded purchases in a contest.
    pub async fn purchase_count(&self, contest: &TestContest) -> i64 {
        let pool = self.env.pool().await;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM purchases WHERE contest_id = $1")
            .bind(&contest.id)
            .fetch_one(&pool)
            .await
            .expect("count purchases");
        pool.close().await;
        count
    }

    /// Stops every worker and receiver gracefully, then drops the database and queues.
    pub async fn stop(self) {
        for worker in self.workers {
            worker.stop().await.expect("worker stops cleanly");
        }
        for receiver in self.receivers {
            receiver.stop().await.expect("receiver stops cleanly");
        }
        self.env.cleanup().await;
    }
}
