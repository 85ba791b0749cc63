//! dbt's `run_results.json`: what each node (model, test, seed, snapshot) did.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// The part of `target/run_results.json` Weir reads.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct RunResults {
    pub results: Vec<Node>,
    #[serde(default)]
    pub elapsed_time: f64,
}

/// One node's result.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Node {
    /// `model.<package>.<name>`, `test.<package>.<name>.<hash>`, …
    pub unique_id: String,
    /// `success`, `error`, `skipped` (models, seeds, snapshots); `pass`, `fail`,
    /// `warn`, `error`, `skipped` (tests).
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub failures: Option<u64>,
    #[serde(default)]
    pub adapter_response: Map<String, Value>,
    #[serde(default)]
    pub execution_time: f64,
}

/// A message cut to this many characters; `audit` keeps whole messages, but
/// dbt's can carry a whole compiled query.
const MESSAGE_CHARS: usize = 600;

impl Node {
    /// `model`, `test`, `seed`, `snapshot`, …
    pub fn kind(&self) -> &str {
        self.unique_id.split('.').next().unwrap_or_default()
    }

    /// The node's name: `fact_messages`, `not_null_orders_order_id`.
    pub fn name(&self) -> &str {
        self.unique_id.split('.').nth(2).unwrap_or(&self.unique_id)
    }

    /// Rows the database reported for the node's last statement.
    pub fn rows_affected(&self) -> Option<u64> {
        self.adapter_response.get("rows_affected").and_then(Value::as_u64)
    }

    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "error" | "fail" | "runtime error")
    }

    /// `model `fact_chats` failed: Database Error in model fact_chats …`, on one line.
    fn failure(&self) -> String {
        let message = self.message.as_deref().unwrap_or("no message");
        // dbt points at the compiled SQL in its target folder, which Weir's run removes.
        let message = message.split("compiled code at ").next().unwrap_or(message);
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let message = match message.char_indices().nth(MESSAGE_CHARS) {
            Some((at, _)) => format!("{}…", &message[..at]),
            None => message,
        };
        format!(
            "{} `{}` {}: {message}",
            self.kind(),
            self.name(),
            if self.status == "fail" { "failed" } else { "errored" }
        )
    }
}

impl RunResults {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Rows affected by the models, seeds and snapshots (tests only read).
    pub fn rows_affected(&self) -> u64 {
        self.results.iter().filter(|n| n.kind() != "test").filter_map(Node::rows_affected).sum()
    }

    /// How many nodes of each kind ended in each status.
    fn counts(&self) -> BTreeMap<(&str, &str), u64> {
        let mut counts = BTreeMap::new();
        for n in &self.results {
            *counts.entry((n.kind(), n.status.as_str())).or_insert(0) += 1;
        }
        counts
    }

    /// `9 models built, 31 tests passed`: what `dbt <command>` did, in a line.
    pub fn summary(&self, command: &str) -> String {
        let mut counts: Vec<_> = self.counts().into_iter().collect();
        let kind_rank = |k: &str| ["seed", "snapshot", "model", "test"].iter().position(|x| *x == k).unwrap_or(4);
        let status_rank =
            |s: &str| ["success", "pass", "warn", "error", "fail", "skipped"].iter().position(|x| *x == s).unwrap_or(6);
        counts.sort_by_key(|((k, s), _)| (kind_rank(k), status_rank(s)));
        let mut parts = Vec::new();
        for ((kind, status), n) in &counts {
            let verb = match (*kind, *status) {
                (_, "success") if command == "compile" => "compiled",
                ("model" | "snapshot", "success") => "built",
                ("seed", "success") => "loaded",
                ("test", "pass") => "passed",
                ("test", "warn") => "warned",
                ("operation", "success") => "ran",
                (_, "skipped") => "skipped",
                (_, "error") => "errored",
                ("test", "fail") => "failed",
                (_, "success") => "succeeded",
                _ => continue,
            };
            parts.push(format!("{n} {kind}{} {verb}", if *n == 1 { "" } else { "s" }));
        }
        if parts.is_empty() { "nothing selected".to_owned() } else { parts.join(", ") }
    }

    /// The first node that failed, named, with dbt's message; the others named
    /// after it, and how many nodes were skipped because of them.
    pub fn failure(&self) -> Option<String> {
        let failed: Vec<&Node> = self.results.iter().filter(|n| n.failed()).collect();
        let first = failed.first()?;
        let mut text = first.failure();
        if failed.len() > 1 {
            let others: Vec<String> = failed[1..].iter().map(|n| format!("{} `{}`", n.kind(), n.name())).collect();
            text.push_str(&format!(" (also failed: {})", others.join(", ")));
        }
        let skipped = self.results.iter().filter(|n| n.status == "skipped").count();
        if skipped > 0 {
            text.push_str(&format!("; {skipped} downstream node{} skipped", if skipped == 1 { "" } else { "s" }));
        }
        Some(text)
    }

    /// For `audit.details`: counts and every node's status, rows and seconds.
    pub fn details(&self, command: &str) -> Value {
        let mut by_kind: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for ((kind, status), n) in self.counts() {
            by_kind.entry(kind).or_default().insert(status.to_owned(), n.into());
        }
        let nodes: Vec<Value> = self
            .results
            .iter()
            .map(|n| {
                let mut node = json!({ "node": n.unique_id, "status": n.status, "seconds": (n.execution_time * 1000.0).round() / 1000.0 });
                if let Some(rows) = n.rows_affected().filter(|_| n.kind() != "test") {
                    node["rows_affected"] = rows.into();
                }
                if let Some(f) = n.failures.filter(|f| *f > 0) {
                    node["failures"] = f.into();
                }
                node
            })
            .collect();
        json!({
            "dbt": command,
            "nodes_by_status": by_kind,
            "rows_affected": self.rows_affected(),
            "seconds": (self.elapsed_time * 1000.0).round() / 1000.0,
            "nodes": nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAILED: &str = r#"{
      "metadata": {"dbt_version": "1.11.0"},
      "elapsed_time": 3.2,
      "results": [
        {"unique_id": "model.weir.stg_orders", "status": "success", "message": "SELECT 120",
         "failures": null, "execution_time": 0.2,
         "adapter_response": {"_message": "SELECT 120", "code": "SELECT", "rows_affected": 120}},
        {"unique_id": "test.weir.not_null_stg_orders_order_id.5a1b", "status": "pass", "message": null,
         "failures": 0, "execution_time": 0.05, "adapter_response": {}},
        {"unique_id": "model.weir.fact_chats", "status": "error",
         "message": "Database Error in model fact_chats (models/gold/fact_chats.sql)\n  column \"nope\" does not exist\n  LINE 3: select nope\n                 ^\n  compiled code at /tmp/weir-dbt-x/target/run/weir/models/gold/fact_chats.sql",
         "failures": null, "execution_time": 0.1, "adapter_response": {}},
        {"unique_id": "test.weir.accepted_values_stg_orders_status.9f", "status": "fail",
         "message": "Got 2 results, configured to fail if != 0", "failures": 2, "execution_time": 0.04, "adapter_response": {}},
        {"unique_id": "model.weir.gold_chats", "status": "skipped", "message": null, "failures": null,
         "execution_time": 0, "adapter_response": {}}
      ]
    }"#;

    #[test]
    fn names_the_failing_model_and_its_message_on_one_line() {
        let r = RunResults::parse(FAILED).unwrap();
        let failure = r.failure().unwrap();
        assert_eq!(
            failure,
            "model `fact_chats` errored: Database Error in model fact_chats (models/gold/fact_chats.sql) column \
             \"nope\" does not exist LINE 3: select nope ^ (also failed: test `accepted_values_stg_orders_status`); \
             1 downstream node skipped"
        );
        assert_eq!(r.rows_affected(), 120);
        assert_eq!(r.summary("build"), "1 model built, 1 model errored, 1 model skipped, 1 test passed, 1 test failed");
        let d = r.details("build");
        assert_eq!(d["nodes_by_status"]["model"]["success"], 1);
        assert_eq!(d["nodes"][3]["failures"], 2);
        assert_eq!(d["nodes"][0]["rows_affected"], 120);
    }

    #[test]
    fn a_clean_build_has_no_failure() {
        let r = RunResults::parse(
            r#"{"results": [
            {"unique_id": "model.weir.a", "status": "success", "adapter_response": {"rows_affected": 3}},
            {"unique_id": "model.weir.b", "status": "success", "adapter_response": {"rows_affected": 4}},
            {"unique_id": "test.weir.t.1", "status": "pass"}]}"#,
        )
        .unwrap();
        assert_eq!(r.failure(), None);
        assert_eq!(r.summary("build"), "2 models built, 1 test passed");
        assert!(r.summary("compile").starts_with("2 models compiled"));
        assert_eq!(r.rows_affected(), 7);
    }
}
