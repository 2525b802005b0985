//! `raftkv bench --plot FILE.svg`: writes/s against clients, one line per
//! system, clients on a log scale; a bar shows the range of a cell's
//! rounds. Plain SVG written by hand (no fonts or crates needed), in the
//! manner of crates/raftkv-bench's plot.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 56.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// One system's line: for each client count, the median writes/s and the
/// lowest and highest round.
pub struct Series {
    /// The system's name, for the legend.
    pub name: String,
    /// `(clients, median, low, high)`, in any order.
    pub points: Vec<(usize, f64, f64, f64)>,
}

/// The plot as an SVG document.
pub fn svg(title: &str, series: &[Series]) -> String {
    let mut xs: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    xs.sort_unstable();
    xs.dedup();
    let (lo, hi) = match (xs.first(), xs.last()) {
        (Some(&a), Some(&b)) => ((a.max(1) as f64).log10(), (b.max(1) as f64).log10()),
        _ => (0.0, 1.0),
    };
    // Half a decade of margin each side, so end points are not on the axis.
    let (lo, hi) = (lo - 0.15, hi.max(lo + 0.3) + 0.15);
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.3))
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let ymax = nice_ceiling(ymax);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x_of = |c: usize| LEFT + pw * ((c.max(1) as f64).log10() - lo) / (hi - lo);
    let y_of = |v: f64| TOP + ph * (1.0 - v / ymax);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    for k in 0..=5 {
        let v = ymax * k as f64 / 5.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            thousands(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="black"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>"#,
        b = TOP + ph,
        r = LEFT + pw
    );
    for &c in &xs {
        let x = x_of(c);
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{b}" x2="{x:.1}" y2="{}" stroke="black"/><text x="{x:.1}" y="{}" text-anchor="middle">{c}</text>"#,
            TOP + ph + 4.0,
            TOP + ph + 18.0,
            b = TOP + ph
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">closed-loop clients (log scale)</text>"#,
        LEFT + pw / 2.0,
        H - 14.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{m}" text-anchor="middle" transform="rotate(-90 18 {m})">writes/s (median; bar: range of rounds)</text>"#,
        m = TOP + ph / 2.0
    );
    for (i, line) in series.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        let mut points = line.points.clone();
        points.sort_by_key(|p| p.0);
        let mut path = Vec::new();
        for &(c, median, low, high) in &points {
            if !median.is_finite() {
                continue;
            }
            let x = x_of(c);
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{col}" stroke-width="1.5" opacity="0.6"/><circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{col}"/>"#,
                y_of(low),
                y_of(high),
                y_of(median)
            );
            path.push(format!("{x:.1},{:.1}", y_of(median)));
        }
        if path.len() > 1 {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{col}" stroke-width="2"/>"#,
                path.join(" ")
            );
        }
        let (lx, ly) = (LEFT + pw + 16.0, TOP + 10.0 + 20.0 * i as f64);
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{col}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 28.0,
            lx + 34.0,
            ly + 4.0,
            escape(&line.name)
        );
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

/// `12,500` for 12500.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    #[test]
    fn one_line_per_system_and_a_point_per_cell_on_a_log_axis() {
        let series = vec![
            Series {
                name: "raftkv".into(),
                points: vec![(1, 1000.0, 900.0, 1100.0), (256, 20000.0, 19000.0, 21000.0)],
            },
            Series {
                name: "a<b".into(),
                points: vec![(16, 500.0, 400.0, 600.0), (256, 5000.0, 4000.0, 6000.0)],
            },
        ];
        let svg = svg("t & t", &series);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(count(&svg, "<polyline"), 2);
        assert_eq!(count(&svg, "<circle"), 4);
        assert!(svg.contains("t &amp; t") && svg.contains("a&lt;b"));
        // 1, 16 and 256 are evenly spaced: equal ratios, equal steps.
        let x = |c: &str| -> f64 {
            let at = svg
                .find(&format!(r#"text-anchor="middle">{c}</text>"#))
                .unwrap();
            let tag = &svg[..at];
            let start = tag.rfind("<text x=\"").unwrap() + 9;
            tag[start..].split('"').next().unwrap().parse().unwrap()
        };
        let (a, b, c) = (x("1"), x("16"), x("256"));
        assert!(((b - a) - (c - b)).abs() < 0.2, "{a} {b} {c}");
        assert_eq!(thousands(21000.0), "21,000");
        assert_eq!(nice_ceiling(21000.0), 50000.0);
    }
}
