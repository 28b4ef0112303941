//! `wisp bench compare a.json b.json ...`: runs from different machines, adapters or
//! models (each file a `wisp bench -o json` report, or an array of them from
//! `--all-adapters`) merged into one markdown table, a row per test and a column per run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One run, as much of it as the table needs (read leniently from the JSON, so runs of
/// older and newer schema versions can be compared while the fields keep their meaning).
struct Run {
    label: String,
    tests: Vec<(String, f64, f64, Option<f64>)>,
}

fn runs_in(path: &PathBuf) -> Result<Vec<Run>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let reports = match json {
        Value::Array(a) => a,
        one => vec![one],
    };
    reports
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |what: &str| {
                anyhow::anyhow!(
                    "{} (report {i}) has no {what}: is it the output of `wisp bench -o json`?",
                    path.display()
                )
            };
            let text = |p: &str| r.pointer(p).and_then(Value::as_str).ok_or_else(|| bad(p));
            let label = format!(
                "{} · {} ({})",
                text("/model/name")?,
                text("/adapter/name")?,
                text("/adapter/backend")?
            );
            let tests = r
                .get("tests")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("tests"))?
                .iter()
                .map(|t| {
                    let num = |k: &str| t.get(k).and_then(Value::as_f64);
                    let name = t
                        .get("test")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad("tests[].test"))?;
                    Ok((
                        name.to_string(),
                        num("tokens_per_second").ok_or_else(|| bad("tokens_per_second"))?,
                        num("tokens_per_second_std").unwrap_or(0.0),
                        num("percent_of_bandwidth"),
                    ))
                })
                .collect::<Result<_>>()?;
            Ok(Run { label, tests })
        })
        .collect()
}

/// The merged table, in markdown.
pub fn table(paths: &[PathBuf]) -> Result<String> {
    if paths.is_empty() {
        bail!("give the JSON files of `wisp bench -o json` runs to compare");
    }
    let mut runs = Vec::new();
    for p in paths {
        runs.extend(runs_in(p)?);
    }
    // Tests in the order they first appear.
    let mut names: Vec<String> = Vec::new();
    for r in &runs {
        for (n, ..) in &r.tests {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut out = String::new();
    out += "| test |";
    for r in &runs {
        out += &format!(" {} |", r.label);
    }
    out += "\n| --- |";
    out += &" ---: |".repeat(runs.len());
    out += "\n";
    for n in &names {
        out += &format!("| {n} |");
        for r in &runs {
            match r.tests.iter().find(|t| &t.0 == n) {
                Some((_, mean, std, pct)) => {
                    out += &format!(" {mean:.2} ± {std:.2}");
                    if let Some(p) = pct {
                        out += &format!(" ({p:.0}% BW)");
                    }
                    out += " |";
                }
                None => out += " – |",
            }
        }
        out += "\n";
    }
    out +=
        "\nt/s, mean ± std; (% BW): decoding's share of that adapter's streaming-read bandwidth.\n";
    Ok(out)
}
