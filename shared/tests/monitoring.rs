//! The monitoring files in `deploy/` against the metrics the services export: every alert rule
//! and every Grafana query must name metrics that exist (a renamed metric would otherwise leave
//! a dashboard blank and an alert silent forever), the alerts the runbook relies on must be
//! there, and the compose monitoring profile must load them.
//!
//! The exported names are read from `shared/src/metrics.rs` itself (its `pub const … = "blitz_…"`
//! lines), so adding a metric needs no change here.

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// `(every exported metric name, the histograms among them)`.
fn exported() -> (HashSet<String>, HashSet<String>) {
    let source = read("shared/src/metrics.rs");
    let mut names = HashSet::new();
    let mut constants = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("pub const ") {
            if let Some((constant, value)) = rest.split_once(": &str = \"") {
                let name = value.trim_end_matches("\";");
                if name.starts_with("blitz_") {
                    names.insert(name.to_owned());
                    constants.push((constant.to_owned(), name.to_owned()));
                }
            }
        }
    }
    // Histograms are the metrics given buckets; they export `_bucket`, `_sum` and `_count`.
    let histograms = constants
        .into_iter()
        .filter(|(constant, _)| source.contains(&format!("Matcher::Full({constant}.into())")))
        .map(|(_, name)| name)
        .collect();
    (names, histograms)
}

/// Every `blitz_…` identifier in a PromQL expression.
fn metrics_named(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut start = 0;
    while let Some(offset) = expr[start..].find("blitz_") {
        let begin = start + offset;
        let preceded_by_word =
            begin > 0 && (bytes[begin - 1].is_ascii_alphanumeric() || bytes[begin - 1] == b'_');
        let end = expr[begin..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |length| begin + length);
        if !preceded_by_word {
            found.insert(expr[begin..end].to_owned());
        }
        start = end;
    }
    found
}

/// Checks that each metric `expr` names is exported; returns the unknown ones.
fn unknown_metrics(expr: &str) -> Vec<String> {
    let (names, histograms) = exported();
    metrics_named(expr)
        .into_iter()
        .filter(|name| {
            if names.contains(name) {
                return false;
            }
            let histogram_series = ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| histograms.contains(base))
            });
            !histogram_series
        })
        .collect()
}

#[test]
fn the_metric_list_is_read_from_the_source() {
    let (names, histograms) = exported();
    assert!(names.contains("blitz_queue_depth"), "{names:?}");
    assert!(names.contains("blitz_acks_lost_total"), "{names:?}");
    assert!(histograms.contains("blitz_end_to_end_lag_seconds"));
    assert!(!histograms.contains("blitz_queue_depth"));
    // The checker itself: a misspelt or made-up name is caught, suffixes only on histograms.
    assert_eq!(
        unknown_metrics("rate(blitz_queue_dept[5m]) + blitz_batch_size_bucket"),
        ["blitz_queue_dept"]
    );
    assert_eq!(
        unknown_metrics("blitz_queue_depth_count"),
        ["blitz_queue_depth_count"]
    );
    assert!(unknown_metrics("sum(rate(blitz_publish_duration_seconds_count[1m]))").is_empty());
}

fn rules() -> Vec<Yaml> {
    let text = read("deploy/alerts.yml");
    let documents = YamlLoader::load_from_str(&text).expect("deploy/alerts.yml is YAML");
    let groups = documents[0]["groups"]
        .as_vec()
        .expect("a `groups` list")
        .clone();
    groups
        .iter()
        .flat_map(|group| group["rules"].as_vec().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn every_alert_rule_is_complete_and_names_exported_metrics() {
    let rules = rules();
    assert!(!rules.is_empty(), "no alert rules");
    let mut names = HashSet::new();
    for rule in &rules {
        let name = rule["alert"]
            .as_str()
            .expect("every rule is an alert with a name");
        assert!(names.insert(name.to_owned()), "{name} defined twice");
        let expr = rule["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: expr"));
        assert!(
            expr.contains("blitz_") || expr.contains("up{"),
            "{name}: watches none of our metrics: {expr}"
        );
        assert_eq!(
            unknown_metrics(expr),
            Vec::<String>::new(),
            "{name}: {expr}"
        );
        let severity = rule["labels"]["severity"].as_str();
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name}: severity page or ticket, got {severity:?}"
        );
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.len() > 20,
            "{name}: a summary that tells what to do"
        );
        if let Some(duration) = rule["for"].as_str() {
            assert!(
                duration
                    .strip_suffix(['s', 'm', 'h'])
                    .is_some_and(|n| n.parse::<u32>().is_ok()),
                "{name}: `for: {duration}`"
            );
        }
    }
    // The alerts the runbook (docs/operations.md) refers to.
    for required in [
        "BlitzTargetDown",
        "BlitzAcksLost",
        "BlitzQueueBacklogGrowing",
        "BlitzDeadLettersPresent",
        "BlitzNoConsumers",
    ] {
        assert!(names.contains(required), "missing alert {required}");
    }
    let runbook = read("docs/operations.md");
    for name in &names {
        assert!(
            runbook.contains(name.as_str()),
            "docs/operations.md does not explain {name}"
        );
    }
}

/// Every `expr` anywhere in a Grafana dashboard.
fn queries(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr.clone()),
                    _ => queries(inner, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| queries(item, found)),
        _ => {}
    }
}

#[test]
fn every_dashboard_query_names_exported_metrics() {
    let text = read("deploy/grafana/dashboards/blitz.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "an overview worth the name");
    let datasource = read("deploy/grafana/provisioning/datasources/prometheus.yml");
    let documents = YamlLoader::load_from_str(&datasource).expect("datasource YAML");
    let uid = documents[0]["datasources"][0]["uid"]
        .as_str()
        .expect("the provisioned data source's uid");
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("?");
        assert_eq!(
            panel["datasource"]["uid"], uid,
            "{title}: the provisioned data source"
        );
        let mut found = Vec::new();
        queries(panel, &mut found);
        assert!(!found.is_empty(), "{title}: no query");
        for expr in found {
            assert!(
                expr.contains("blitz_") || expr.contains("up{"),
                "{title}: shows none of our metrics: {expr}"
            );
            assert_eq!(
                unknown_metrics(&expr),
                Vec::<String>::new(),
                "{title}: {expr}"
            );
        }
    }
}

#[test]
fn the_compose_monitoring_profile_loads_rules_and_dashboard_without_port_clashes() {
    let text = read("docker-compose.yml");
    let documents = YamlLoader::load_from_str(&text).expect("docker-compose.yml is YAML");
    let services = &documents[0]["services"];
    let prometheus = &services["prometheus"];
    let mounts: Vec<&str> = prometheus["volumes"]
        .as_vec()
        .expect("prometheus volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(mounts.iter().any(|m| m.starts_with("./deploy/alerts.yml:")));
    let config = read("deploy/prometheus.yml");
    assert!(config.contains("/etc/prometheus/alerts.yml"));
    let grafana = &services["grafana"];
    let mounts: Vec<&str> = grafana["volumes"]
        .as_vec()
        .expect("grafana volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(mounts
        .iter()
        .any(|m| m.starts_with("./deploy/grafana/dashboards:")));
    // No host port of the monitoring profile may be one a local worker uses
    // (`scripts/run-local.sh` gives worker N the port 9089 + N, from 9090 up).
    for service in ["prometheus", "grafana"] {
        for port in services[service]["ports"].as_vec().expect("ports") {
            let mapping = port.as_str().expect("a port mapping string");
            let host_port: u16 = mapping
                .rsplit(':')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("{service}: host port in {mapping}"));
            assert!(
                !(9090..9190).contains(&host_port),
                "{service} publishes {host_port}, in the range local workers listen on"
            );
        }
    }
}
