//! The report as one self-contained HTML page: inline SVG plots (latency and
//! rate over time, the latency percentile spectrum, answers by code) and the
//! tables of the terminal report. No script, no font, no network.

use std::fmt::Write;

use super::report::Report;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 220.0;
const PAD: f64 = 44.0;

/// A line chart of one or more series over shared x values.
fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    xs: &[f64],
    series: &[(&str, &str, Vec<f64>)],
    x_ticks: &[(f64, String)],
) -> String {
    let x_max = xs.iter().cloned().fold(1e-9, f64::max);
    let x_min = xs.iter().cloned().fold(f64::INFINITY, f64::min).min(x_max);
    let y_max = series
        .iter()
        .flat_map(|(_, _, ys)| ys.iter().cloned())
        .fold(1e-9, f64::max)
        * 1.1;
    let sx = |x: f64| PAD + (x - x_min) / (x_max - x_min).max(1e-9) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD + -(y / y_max) * (H - 2.0 * PAD);
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    let _ = write!(
        svg,
        r##"<line x1="{PAD}" y1="{}" x2="{}" y2="{}" stroke="#888"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{}" stroke="#888"/>"##,
        H - PAD,
        W - PAD,
        H - PAD,
        H - PAD
    );
    for i in 0..=4 {
        let y = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text><line x1="{PAD}" y1="{2}" x2="{}" y2="{2}" stroke="#eee"/>"##,
            PAD - 4.0,
            sy(y) + 3.0,
            fmt_num(y),
            W - PAD
        );
    }
    for (x, label) in x_ticks {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            sx(*x),
            H - PAD + 14.0,
            esc(label)
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        W / 2.0,
        H - 6.0,
        esc(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="12" y="{}" font-size="11" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        H / 2.0,
        H / 2.0,
        esc(y_label)
    );
    for (i, (name, colour, ys)) in series.iter().enumerate() {
        let points: Vec<String> = xs
            .iter()
            .zip(ys)
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" font-size="11" fill="{colour}">{}</text>"#,
            W - PAD - 90.0,
            PAD + 14.0 * i as f64,
            esc(name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}", v)
    } else if v >= 10.0 {
        format!("{:.1}", v)
    } else {
        format!("{:.2}", v)
    }
}

fn bars(title: &str, items: &[(String, u64)]) -> String {
    if items.is_empty() {
        return format!(
            "<figure><figcaption>{}</figcaption><p>None.</p></figure>",
            esc(title)
        );
    }
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1) as f64;
    let row = 22.0;
    let h = PAD + row * items.len() as f64;
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" aria-label="{}">"#,
        esc(title),
        esc(title)
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let w = (*n as f64 / max) * (W - 260.0);
        // Red for the service failing; grey for the game's own refusals.
        let colour = if super::report::is_failure(label) {
            "#c0392b"
        } else {
            "#999"
        };
        let _ = write!(
            svg,
            r##"<text x="150" y="{}" font-size="11" text-anchor="end">{}</text><rect x="156" y="{y}" width="{w:.1}" height="16" fill="{colour}"/><text x="{}" y="{}" font-size="11">{n}</text>"##,
            y + 12.0,
            esc(label),
            160.0 + w,
            y + 12.0
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

pub fn render(r: &Report) -> String {
    let xs: Vec<f64> = r.timeline.iter().map(|s| s.second as f64).collect();
    let ticks: Vec<(f64, String)> = xs
        .iter()
        .step_by((xs.len() / 8).max(1))
        .map(|x| (*x, format!("{x:.0}s")))
        .collect();
    let latency = line_chart(
        "Latency over time",
        "seconds into the run",
        "ms",
        &xs,
        &[
            (
                "p99",
                "#c0392b",
                r.timeline.iter().map(|s| s.p99_ms).collect(),
            ),
            (
                "p50",
                "#2471a3",
                r.timeline.iter().map(|s| s.p50_ms).collect(),
            ),
        ],
        &ticks,
    );
    let rate = line_chart(
        "Rate over time",
        "seconds into the run",
        "commands/s",
        &xs,
        &[
            (
                "answered",
                "#1e8449",
                r.timeline.iter().map(|s| s.sent as f64).collect(),
            ),
            (
                "failed",
                "#c0392b",
                r.timeline.iter().map(|s| s.failed as f64).collect(),
            ),
        ],
        &ticks,
    );
    // Spectrum on a log scale of 1/(1-q), as HdrHistogram plots do, so the tail is readable.
    let spec_x: Vec<f64> = r
        .spectrum
        .iter()
        .map(|(p, _)| (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10())
        .collect();
    let spec_ticks: Vec<(f64, String)> = r
        .spectrum
        .iter()
        .zip(&spec_x)
        .filter(|((p, _), _)| [0.0, 90.0, 99.0, 99.9, 99.99].contains(p))
        .map(|((p, _), x)| (*x, format!("{p}%")))
        .collect();
    let spectrum = line_chart(
        "Latency by percentile",
        "percentile",
        "ms",
        &spec_x,
        &[(
            "latency",
            "#7d3c98",
            r.spectrum.iter().map(|(_, ms)| *ms).collect(),
        )],
        &spec_ticks,
    );
    let mut codes: Vec<(String, u64)> = r.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
    if r.dropped > 0 {
        codes.push(("dropped (not sent on time)".into(), r.dropped));
    }
    let errors = bars("Answers other than ok, by code (grey: refused by the game's rules; red: the service failed)", &codes);

    let mut rows = String::new();
    for (name, l) in &r.by_command {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(name),
            l.p50_ms,
            l.p90_ms,
            l.p99_ms,
            l.max_ms
        );
    }
    let mut checks = String::new();
    for c in &r.invariants.checked {
        let _ = write!(checks, "<li>{}</li>", esc(c));
    }
    for v in &r.invariants.violations {
        let _ = write!(checks, r#"<li class="bad">VIOLATION: {}</li>"#, esc(v));
    }
    if !r.invariants.users.is_empty() {
        let _ = write!(
            checks,
            r#"<li class="bad">players involved: {}</li>"#,
            esc(&r.invariants.users.join(", "))
        );
    }
    let mut thresholds = String::new();
    for t in &r.thresholds {
        let _ = write!(
            thresholds,
            r#"<li class="{}">{} — actual {:.4}: {}</li>"#,
            if t.passed { "good" } else { "bad" },
            esc(&t.rule),
            t.actual,
            if t.passed { "held" } else { "FAILED" }
        );
    }
    let baseline = r.baseline.as_ref().map_or(String::new(), |b| {
        format!(
            "<h2>Against the baseline</h2><p>One transaction per command on the same store: {:.0} commands/s, p99 {:.2} ms. kokoro/baseline: <b>throughput {:.2}×</b>, p99 {:.4}× (kokoro's p99 is {:.0}× lower).</p>",
            b.rate, b.latency.p99_ms, b.ratio_throughput, b.ratio_p99, 1.0 / b.ratio_p99.max(1e-9)
        )
    });
    let l = &r.latency;
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>kokoro load test: {name}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:760px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}td,th{{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}.bad{{color:#c0392b;font-weight:bold}}.good{{color:#1e8449}}figure{{margin:1.5em 0}}figcaption{{font-weight:bold}}</style></head><body>
<h1>kokoro load test: {name} — {verdict}</h1>
<p>{target}, {secs:.1} s on {machine}. {sent} commands sent, {ok} ok, {dropped} dropped; {rate:.0} answered per second; failure ratio {ratio:.4}%.</p>
<p>Latency: p50 {p50:.2} ms · p90 {p90:.2} ms · p99 {p99:.2} ms · p99.9 {p999:.2} ms · max {max:.2} ms.</p>
{latency}{rate_chart}{spectrum}{errors}
<h2>By command</h2><table><tr><th>command</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>{rows}</table>
<h2>Invariants</h2><ul>{checks}</ul>
<h2>Thresholds</h2><ul>{thresholds}</ul>
{baseline}
</body></html>
"#,
        name = esc(&r.scenario),
        verdict = if r.passed() { "PASS" } else { "FAIL" },
        target = esc(&r.target),
        secs = r.duration_secs,
        machine = esc(&r.machine),
        sent = r.sent,
        ok = r.ok,
        dropped = r.dropped,
        rate = r.rate,
        ratio = r.error_ratio * 100.0,
        p50 = l.p50_ms,
        p90 = l.p90_ms,
        p99 = l.p99_ms,
        p999 = l.p999_ms,
        max = l.max_ms,
        rate_chart = rate,
    )
}
