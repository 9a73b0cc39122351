//! Experiment tracking in MLflow through its REST API (`/api/2.0/mlflow/…`): each model fit and
//! evaluation becomes a run with its parameters, metrics and the model as an artifact. MLflow
//! is optional and never in the way: when it is unreachable, fitting and evaluating go on and
//! the caller is told so.

use std::time::Duration;

use serde_json::{json, Value};

/// Why a run could not be logged.
#[derive(Debug, thiserror::Error)]
#[error("MLflow at {url}: {detail}")]
pub struct MlflowError {
    url: String,
    detail: String,
}

/// A run to log: everything is sent when it is logged, in one go.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub experiment: String,
    pub name: String,
    pub params: Vec<(String, String)>,
    pub metrics: Vec<(String, f64)>,
    pub tags: Vec<(String, String)>,
    /// Artifacts: (path inside the run, content).
    pub artifacts: Vec<(String, Vec<u8>)>,
}

/// A client of one tracking server.
#[derive(Debug, Clone)]
pub struct Mlflow {
    base: String,
    http: reqwest::Client,
}

impl Mlflow {
    /// `url`: the tracking server, e.g. `http://127.0.0.1:5000`.
    pub fn new(url: &str) -> Mlflow {
        Mlflow {
            base: url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
        }
    }

    fn error(&self, detail: impl std::fmt::Display) -> MlflowError {
        MlflowError {
            url: self.base.clone(),
            detail: detail.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, MlflowError> {
        let mut request = self
            .http
            .request(method, format!("{}/api/2.0/mlflow/{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| self.error(e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| self.error(e))?;
        if !status.is_success() {
            return Err(self.error(format!("{path}: {status}: {text}")));
        }
        serde_json::from_str(if text.is_empty() { "{}" } else { &text }).map_err(|e| self.error(e))
    }

    /// The id of the experiment with this name, created if it does not exist yet.
    async fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let found = self
            .http
            .get(format!(
                "{}/api/2.0/mlflow/experiments/get-by-name",
                self.base
            ))
            .query(&[("experiment_name", name)])
            .send()
            .await
            .map_err(|e| self.error(e))?;
        if found.status().is_success() {
            let v: Value = found.json().await.map_err(|e| self.error(e))?;
            if let Some(id) = v["experiment"]["experiment_id"].as_str() {
                return Ok(id.to_owned());
            }
        }
        match self
            .call(
                reqwest::Method::POST,
                "experiments/create",
                Some(json!({"name": name})),
            )
            .await
        {
            Ok(v) => v["experiment_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| self.error("no experiment_id in the answer")),
            // Created meanwhile by someone else.
            Err(e) if e.detail.contains("RESOURCE_ALREADY_EXISTS") => {
                Box::pin(self.experiment_id(name)).await
            }
            Err(e) => Err(e),
        }
    }

    /// Logs a finished run; returns its id.
    pub async fn log(&self, run: &Run, now_ms: i64) -> Result<String, MlflowError> {
        let experiment_id = self.experiment_id(&run.experiment).await?;
        let created = self
            .call(
                reqwest::Method::POST,
                "runs/create",
                Some(json!({
                    "experiment_id": experiment_id,
                    "run_name": run.name,
                    "start_time": now_ms,
                    "tags": run.tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                })),
            )
            .await?;
        let run_id = created["run"]["info"]["run_id"]
            .as_str()
            .ok_or_else(|| self.error("no run_id in the answer"))?
            .to_owned();
        // log-batch takes at most 1000 metrics and 100 params per call.
        for params in run.params.chunks(100) {
            self.call(
                reqwest::Method::POST,
                "runs/log-batch",
                Some(json!({
                    "run_id": run_id,
                    "params": params.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                })),
            )
            .await?;
        }
        for metrics in run.metrics.chunks(1000) {
            self.call(
                reqwest::Method::POST,
                "runs/log-batch",
                Some(json!({
                    "run_id": run_id,
                    "metrics": metrics
                        .iter()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(k, v)| json!({"key": k, "value": v, "timestamp": now_ms, "step": 0}))
                        .collect::<Vec<_>>(),
                })),
            )
            .await?;
        }
        for (path, content) in &run.artifacts {
            let url = format!(
                "{}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{path}",
                self.base
            );
            let r = self
                .http
                .put(url)
                .body(content.clone())
                .send()
                .await
                .map_err(|e| self.error(e))?;
            if !r.status().is_success() {
                return Err(self.error(format!("artifact {path}: {}", r.status())));
            }
        }
        self.call(
            reqwest::Method::POST,
            "runs/update",
            Some(json!({"run_id": run_id, "status": "FINISHED", "end_time": now_ms})),
        )
        .await?;
        Ok(run_id)
    }
}
