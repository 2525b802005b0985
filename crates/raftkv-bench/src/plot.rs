//! The SVG plot: median writes/s against clients, one line per system and
//! payload, with the range of the repetitions as a bar. Written by hand (a
//! few dozen SVG elements) so that it needs no font files.

use std::fmt::Write;

use crate::report::{rate, size, Results};
use crate::System;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn colour(sys: System) -> &'static str {
    match sys {
        System::Raftkv => "#1f77b4",
        System::RaftRs => "#d62728",
        System::Openraft => "#2ca02c",
    }
}

/// The plot as an SVG document.
pub fn svg(results: &Results, systems: &[System], title: &str) -> String {
    let mut clients: Vec<usize> = results.runs.keys().map(|c| c.0).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut payloads: Vec<usize> = results.runs.keys().map(|c| c.1).collect();
    payloads.sort_unstable();
    payloads.dedup();
    let ymax = results
        .runs
        .keys()
        .flat_map(|&cell| systems.iter().map(move |&s| (cell, s)))
        .map(|(cell, s)| results.rate_range(cell, s).1)
        .filter(|x| x.is_finite())
        .fold(1.0, f64::max);
    let ymax = nice_ceiling(ymax);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    // Clients sit evenly spaced (their values span 1 to thousands).
    let x_of = |i: usize| LEFT + pw * (i as f64 + 0.5) / clients.len().max(1) as f64;
    let y_of = |v: f64| TOP + ph * (1.0 - v / ymax);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Axes, grid and ticks.
    for k in 0..=5 {
        let v = ymax * k as f64 / 5.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            rate(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    for (i, c) in clients.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{c}</text>"#,
            x_of(i),
            TOP + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">closed-loop clients</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">writes/s (median; bar: range)</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // One line per system and payload.
    let mut legend = 0;
    for (pi, &p) in payloads.iter().enumerate() {
        let dash = if pi == 0 {
            ""
        } else {
            r#" stroke-dasharray="6 4""#
        };
        for &sys in systems {
            let col = colour(sys);
            let mut pts = Vec::new();
            for (i, &c) in clients.iter().enumerate() {
                let m = results.median_rate((c, p), sys);
                if !m.is_finite() {
                    continue;
                }
                let (lo, hi) = results.rate_range((c, p), sys);
                let x = x_of(i) + (pi as f64 - 0.5) * 6.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{col}" stroke-width="1.5" opacity="0.6"/>"#,
                    y_of(lo),
                    y_of(hi)
                );
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x}" cy="{}" r="3.5" fill="{col}"/>"#,
                    y_of(m)
                );
                pts.push(format!("{x:.1},{:.1}", y_of(m)));
            }
            if pts.len() > 1 {
                let _ = writeln!(
                    s,
                    r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"{dash}/>"#,
                    pts.join(" ")
                );
            }
            let ly = TOP + 10.0 + 20.0 * legend as f64;
            let lx = LEFT + pw + 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{col}" stroke-width="2"{dash}/><text x="{}" y="{}">{} {}</text>"#,
                lx + 28.0,
                lx + 34.0,
                ly + 4.0,
                sys.name(),
                size(p)
            );
            legend += 1;
        }
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest 1, 2 or 5 times a power of ten at or above `x`.
fn nice_ceiling(x: f64) -> f64 {
    let p = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&v| v >= x)
        .unwrap_or(10.0 * p)
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
