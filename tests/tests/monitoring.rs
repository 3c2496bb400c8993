//! The alert rules (`deploy/prometheus/*.yml`) and the Grafana dashboard
//! (`deploy/grafana/learngreek.json`) of issue 14, item 4:
//! - `promtool check rules` accepts the rules, and `promtool test rules` runs their unit
//!   tests (`deploy/prometheus/tests/*.yml`: each alert fires on a series that should fire
//!   it and stays silent on one that should not);
//! - every alert has a unit test and an entry in docs/operations.md, "Alerts";
//! - every query of the rules and the dashboard parses as PromQL and names only series a
//!   live process of the stack exports (or `up`, which Prometheus writes itself).
//!
//! promtool comes with Debian's `prometheus` package (`.ci/run` installs it); without it
//! these tests fail, as `metrics_lint.rs` does. Run:
//! `scripts/test.sh -p test-support -E 'binary(monitoring)'`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use promql_parser::{
    label::MatchOp,
    parser::{self, Expr},
    util::{ExprVisitor, walk_expr},
};
use serde_json::json;
use serde_yaml::Value;
use test_support::{
    http::HttpClient,
    stack::{StackOptions, spawn_stack_with},
};
use uuid::Uuid;

/// The dashboard file.
const DASHBOARD: &str = "deploy/grafana/learngreek.json";

/// Series that Prometheus itself writes for every scrape target, so no process exports
/// them; a rule may use these and nothing else outside the processes' `/metrics`.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// Grafana's interval variables, replaced by a duration before a dashboard query is
/// parsed (Grafana does the same before it sends the query).
const GRAFANA_INTERVALS: [&str; 3] = ["$__rate_interval", "$__interval", "$__range"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `.yml` files directly in `dir` (relative to the repository), sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml file in {}", dir.display());
    files
}

fn rule_files() -> Vec<PathBuf> {
    yaml_files("deploy/prometheus")
}

fn rule_test_files() -> Vec<PathBuf> {
    yaml_files("deploy/prometheus/tests")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs promtool with `args`; its exit success and what it printed. A missing promtool
/// fails the test: CI installs it, and a check that silently does not run proves nothing.
fn promtool(args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let output = Command::new("promtool")
        .args(args)
        .args(files)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install Debian's `prometheus` package \
                 (apt-get install prometheus), as .ci/run does"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// One alerting rule of the rule files.
struct Alert {
    name: String,
    expr: String,
}

fn alerts() -> Vec<Alert> {
    let mut alerts = Vec::new();
    for file in rule_files() {
        let rules: Value = serde_yaml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let groups = rules["groups"].as_sequence().cloned().unwrap_or_default();
        for rule in groups
            .iter()
            .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        {
            let expr = rule["expr"].as_str().expect("every rule has an expr");
            let name = rule["alert"].as_str().or(rule["record"].as_str());
            alerts.push(Alert {
                name: name.expect("every rule has a name").to_owned(),
                expr: expr.to_owned(),
            });
        }
    }
    assert!(!alerts.is_empty(), "no rule in deploy/prometheus");
    alerts
}

/// Every `expr` of the dashboard (panels, rows' nested panels, anything else that has
/// one), with Grafana's interval variables replaced.
fn dashboard_queries() -> Vec<String> {
    fn collect(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                        _ => collect(child, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
            _ => {}
        }
    }
    let path = repo_root().join(DASHBOARD);
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    let mut found = Vec::new();
    collect(&dashboard["panels"], &mut found);
    assert!(!found.is_empty(), "{DASHBOARD}: no panel has a query");
    found
        .into_iter()
        .map(|expr| {
            GRAFANA_INTERVALS
                .iter()
                .fold(expr, |expr, variable| expr.replace(variable, "5m"))
        })
        .collect()
}

/// Collects the metric name of every selector of a PromQL expression.
struct MetricNames {
    names: BTreeSet<String>,
    unnamed: Vec<String>,
}

impl MetricNames {
    fn add(&mut self, selector: &parser::VectorSelector) {
        let by_matcher = selector
            .matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone());
        match selector.name.clone().or(by_matcher) {
            Some(name) => {
                self.names.insert(name);
            }
            None => self.unnamed.push(selector.to_string()),
        }
    }
}

impl ExprVisitor for MetricNames {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(selector) => self.add(selector),
            Expr::MatrixSelector(matrix) => self.add(&matrix.vs),
            _ => {}
        }
        Ok(true)
    }
}

/// The metric names `query` selects; `Err` when it does not parse, or when a selector
/// names no metric (a regex on `__name__` cannot be checked against the processes).
fn metric_names(query: &str) -> Result<BTreeSet<String>, String> {
    let expr = parser::parse(query).map_err(|e| format!("does not parse: {e}"))?;
    let mut visitor = MetricNames {
        names: BTreeSet::new(),
        unnamed: Vec::new(),
    };
    let Ok(_) = walk_expr(&mut visitor, &expr);
    match visitor.unnamed.as_slice() {
        [] => Ok(visitor.names),
        unnamed => Err(format!("selectors without a metric name: {unnamed:?}")),
    }
}

/// Every query of the rules and the dashboard, each with where it comes from.
fn all_queries() -> Vec<(String, String)> {
    let rules = alerts()
        .into_iter()
        .map(|alert| (format!("rule {}", alert.name), alert.expr));
    let dashboard = dashboard_queries()
        .into_iter()
        .map(|expr| (DASHBOARD.to_owned(), expr));
    rules.chain(dashboard).collect()
}

/// The series names of a Prometheus text exposition: the first word of every sample
/// line, so a histogram counts as its `_bucket`, `_sum` and `_count` series (the names a
/// query uses) and a counter as its `_total` series.
fn exported_series(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn promtool_check_rules_accepts_every_rule_file() {
    let (accepted, report) = promtool(&["check", "rules"], &rule_files());

    assert!(accepted, "promtool check rules:\n{report}");
}

#[test]
fn every_alert_fires_and_stays_silent_as_its_promtool_unit_tests_expect() {
    let (passed, report) = promtool(&["test", "rules"], &rule_test_files());

    assert!(passed, "promtool test rules:\n{report}");
}

#[test]
fn promtool_unit_tests_fail_when_a_rule_queries_a_misspelt_series() {
    // Arrange: a copy of the rules and their tests in which one rule's series is misspelt.
    let dir = std::env::temp_dir().join(format!("learngreek-rules-{}", Uuid::new_v4()));
    fs::create_dir_all(dir.join("tests")).expect("create scratch dir");
    for file in rule_files() {
        let text = read(&file).replace("deck_cache_breaker_state{", "deck_cache_breaker_stat{");
        fs::write(dir.join(file.file_name().unwrap()), text).expect("write rules");
    }
    let mut tests = Vec::new();
    for file in rule_test_files() {
        let copy = dir.join("tests").join(file.file_name().unwrap());
        fs::copy(&file, &copy).expect("copy rule tests");
        tests.push(copy);
    }

    // Act
    let (passed, report) = promtool(&["test", "rules"], &tests);
    fs::remove_dir_all(&dir).ok();

    // Assert
    assert!(
        !passed,
        "promtool test rules passed a misspelt series:\n{report}"
    );
    assert!(
        report.contains("LearnGreekDeckCacheBreakerOpen"),
        "{report}"
    );
}

#[test]
fn every_alert_has_a_unit_test_and_an_entry_in_the_operations_doc() {
    let tests: String = rule_test_files().iter().map(|file| read(file)).collect();
    let operations = read(&repo_root().join("docs/operations.md"));
    let (_, alerts_section) = operations
        .split_once("\n## Alerts\n")
        .expect("docs/operations.md has an \"## Alerts\" section");
    let alerts_section = alerts_section.split("\n## ").next().unwrap_or_default();

    for alert in alerts() {
        assert!(
            tests.contains(&format!("alertname: {}\n", alert.name)),
            "{}: no unit test in deploy/prometheus/tests",
            alert.name
        );
        assert!(
            alerts_section.contains(&format!("`{}`", alert.name)),
            "{}: not described in docs/operations.md, \"Alerts\"",
            alert.name
        );
    }
}

#[test]
fn every_rule_and_dashboard_query_parses_and_names_its_metrics() {
    let problems: Vec<String> = all_queries()
        .into_iter()
        .filter_map(|(source, query)| {
            metric_names(&query)
                .err()
                .map(|e| format!("{source}: {query}\n  {e}"))
        })
        .collect();

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_query_check_reports_a_misspelt_name_and_a_broken_query() {
    // The checks above are only as good as this reading of PromQL.
    let names = metric_names(
        "sum by (app, le) (rate(http_request_duration_seconds_bucket{route!~\"x\"}[5m])) \
         / on (app) group_left sum(up{job=\"learngreek\"}) > bool 0 or {__name__=\"b\"}",
    );
    assert_eq!(
        names,
        Ok(BTreeSet::from([
            "http_request_duration_seconds_bucket".to_owned(),
            "up".to_owned(),
            "b".to_owned(),
        ]))
    );
    assert!(metric_names("sum(rate(x{job=\"a\"}[5m])").is_err());
    assert!(metric_names("{__name__=~\"deck_.*\"}").is_err());
}

#[tokio::test]
async fn every_series_the_rules_and_the_dashboard_query_is_exported_by_a_live_process() {
    // Arrange: the stack, and traffic that makes the lazily created series appear.
    let stack = spawn_stack_with(StackOptions::default()).await;
    let email = format!("monitoring-{}@example.com", Uuid::new_v4());
    let tokens = stack.register(&email, "password1", "Monitoring").await;
    let access = tokens["access_token"].as_str().expect("an access token");
    let login = stack
        .http
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": "password1"}))
        .send()
        .await;
    assert_eq!(login.status, 200, "{}", login.text());
    for path in [
        "/api/v1/auth/me".to_owned(),
        "/api/v1/decks".to_owned(),
        format!("/api/v1/decks/{}", Uuid::new_v4()),
        "/api/v1/study/stats".to_owned(),
        "/api/v1/no/such/route".to_owned(),
    ] {
        stack.http.get(&path).bearer(access).send().await;
    }
    let mut exported = BTreeSet::from(PROMETHEUS_SERIES.map(str::to_owned));
    for process in [&stack.gateway, &stack.session, &stack.deck] {
        let body = HttpClient::new(process.metrics_addr()).scrape().await.0;
        exported.extend(exported_series(&body));
    }

    // Act
    let mut missing = BTreeSet::new();
    for (source, query) in all_queries() {
        let names = metric_names(&query).unwrap_or_else(|e| panic!("{source}: {query}: {e}"));
        for name in names.difference(&exported) {
            missing.insert(format!("{name} (in {source})"));
        }
    }

    // Assert
    assert!(
        missing.is_empty(),
        "series no process exports:\n  {}\n--- the processes export:\n  {}",
        missing.into_iter().collect::<Vec<_>>().join("\n  "),
        exported.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
