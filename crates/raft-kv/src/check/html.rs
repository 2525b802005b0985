//! A picture of a failing partition: one self-contained HTML file (inline
//! SVG, CSS and script; nothing fetched from the network).
//!
//! One lane per clerk; each operation is a bar from its call to its return,
//! labelled with what it asked and what it got. Bars of the longest
//! linearizable prefix are green and numbered in order of effect; the
//! operation that cannot be placed next is red, with a red line at its
//! return (it had to take effect by then). Operations with unknown outcome
//! run dashed to the right edge. The time axis is compressed: every distinct
//! call or return time gets its own step, wider for longer real gaps, so
//! short operations stay readable. Hovering a bar shows its details and the
//! state after it; clicking pins them; `#op-<id>` in the URL pins one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::history::{OpId, Operation};
use super::model::Model;
use super::report::{explain, replay};
use super::Counterexample;

/// At most this many operations are drawn, around the blocked one.
const MAX_DRAWN: usize = 600;
const LEFT: f64 = 90.0;
const UNKNOWN_W: f64 = 170.0;
const TOP: f64 = 40.0;
const ROW_H: f64 = 38.0;
const BAR_H: f64 = 32.0;
const LANE_GAP: f64 = 12.0;
const MIN_STEP: f64 = 30.0;
const EXTRA_STEP: f64 = 50.0;

/// The HTML page for `cx`, titled `title`.
pub fn render<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    cx: &Counterexample,
    title: &str,
) -> String {
    let drawn = window(history, cx);
    let order: BTreeMap<OpId, usize> = cx
        .prefix
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i + 1))
        .collect();
    let states = replay(model, history, &cx.prefix);
    let last_state = states.last().cloned().unwrap_or_else(|| model.init());

    // The compressed time axis.
    let times: BTreeSet<u64> = drawn
        .iter()
        .flat_map(|&id| std::iter::once(history[id].call).chain(history[id].ret()))
        .collect();
    let times: Vec<u64> = times.into_iter().collect();
    let max_gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(1)
        .max(1);
    let mut xs = BTreeMap::new();
    let mut x = 20.0;
    for (i, &t) in times.iter().enumerate() {
        if i > 0 {
            let gap = (t - times[i - 1]) as f64;
            x += MIN_STEP + EXTRA_STEP * (1.0 + gap).ln() / (1.0 + max_gap as f64).ln();
        }
        xs.insert(t, x);
    }
    let x_end = x + 80.0;
    let width = x_end + 30.0;

    // Lanes: one per clerk, rows so that bars of one clerk never overlap
    // (an unknown-outcome bar, drawn fading out, may reach the clerk's next).
    let mut by_client: BTreeMap<u64, Vec<OpId>> = BTreeMap::new();
    for &id in &drawn {
        by_client.entry(history[id].client).or_default().push(id);
    }
    let mut bars = Vec::new(); // (id, x0, x1, y)
    let mut lanes = Vec::new(); // (client, y0, height)
    let mut y = TOP + 20.0;
    for (&client, ids) in &by_client {
        let mut row_end: Vec<f64> = Vec::new();
        for &id in ids {
            let op = &history[id];
            let x0 = xs[&op.call];
            let x1 = op
                .ret()
                .map_or((x0 + UNKNOWN_W).min(x_end), |r| xs[&r])
                .max(x0 + 6.0);
            let row = match row_end.iter().position(|&e| e + 4.0 <= x0) {
                Some(r) => r,
                None => {
                    row_end.push(0.0);
                    row_end.len() - 1
                }
            };
            row_end[row] = x1;
            bars.push((id, x0, x1, y + 6.0 + row as f64 * ROW_H));
        }
        let h = row_end.len() as f64 * ROW_H + 12.0;
        lanes.push((client, y, h));
        y += h + LANE_GAP;
    }
    let height = y + 20.0;

    let mut lanes_svg =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT}" height="{height:.0}">"#);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="ui-monospace, Menlo, Consolas, monospace"><defs>
<linearGradient id="fade-open"><stop offset="0.5" stop-color="#ececec"/><stop offset="1" stop-color="#ececec" stop-opacity="0"/></linearGradient>
<linearGradient id="fade-lin"><stop offset="0.5" stop-color="#d8efd3"/><stop offset="1" stop-color="#d8efd3" stop-opacity="0"/></linearGradient></defs>"##
    );
    for (i, &(client, y0, h)) in lanes.iter().enumerate() {
        let fill = if i % 2 == 0 { "#f3f3f6" } else { "#ffffff" };
        let stripe =
            format!(r#"<rect x="0" y="{y0:.1}" width="100%" height="{h:.1}" fill="{fill}"/>"#);
        svg.push_str(&stripe);
        lanes_svg.push_str(&stripe);
        let _ = write!(
            lanes_svg,
            r#"<text x="10" y="{:.1}" class="lane">clerk {client}</text>"#,
            y0 + 25.0
        );
    }
    lanes_svg.push_str("</svg>");
    // Axis: a tick at every distinct time, a label where there is room.
    let unit = Unit::for_max(times.last().copied().unwrap_or(0));
    let mut last_label = f64::MIN;
    for &t in &times {
        let tx = xs[&t];
        let _ = write!(
            svg,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" class="tick"/>"##,
            TOP + 8.0,
            height - 10.0
        );
        if tx - last_label >= 90.0 {
            let _ = write!(
                svg,
                r#"<text x="{tx:.1}" y="{TOP:.1}" class="axis">{}</text>"#,
                unit.show(t)
            );
            last_label = tx;
        }
    }
    let blocked = &history[cx.blocked];
    if let Some(r) = blocked.ret() {
        let bx = xs[&r];
        let (lx, anchor) = if bx > 240.0 {
            (bx - 5.0, "end")
        } else {
            (bx + 5.0, "start")
        };
        let _ = write!(
            svg,
            r##"<line x1="{bx:.1}" y1="{:.1}" x2="{bx:.1}" y2="{:.1}" class="deadline"/><text x="{:.1}" y="{:.1}" class="deadline-label" text-anchor="{anchor}">op {} had to take effect by here</text>"##,
            TOP + 6.0,
            height - 6.0,
            lx,
            TOP + 14.0,
            cx.blocked
        );
    }
    for &(id, x0, x1, by) in &bars {
        let op = &history[id];
        let class = if id == cx.blocked {
            "op blocked"
        } else if order.contains_key(&id) {
            "op linearized"
        } else {
            "op open"
        };
        let unknown = if op.ret().is_none() { " unknown" } else { "" };
        let w = x1 - x0;
        let badge = order
            .get(&id)
            .map_or_else(String::new, |n| format!("#{n} "));
        let badge = if id == cx.blocked {
            "✗ ".to_string()
        } else {
            badge
        };
        let answer = op
            .output()
            .map_or_else(|| "?".into(), |o| model.describe_output(o));
        let _ = write!(
            svg,
            r#"<svg id="op-{id}" class="{class}{unknown}" data-id="{id}" x="{x0:.1}" y="{by:.1}" width="{w:.1}" height="{BAR_H}"><rect x="1" y="1" width="{:.1}" height="{:.1}" rx="4"/><text x="5" y="13"><tspan class="badge">{}</tspan>{}</text><text x="5" y="26" class="answer">→ {}</text></svg>"#,
            (w - 2.0).max(1.0),
            BAR_H - 2.0,
            esc(&badge),
            esc(&model.describe_input(&op.input)),
            esc(&answer),
        );
    }
    svg.push_str("</svg>");

    // Details for the hover box, one per drawn operation.
    let mut details = String::from("{");
    for &id in &drawn {
        let op = &history[id];
        let mut d = format!("operation {id}, clerk {}\n", op.client);
        let _ = writeln!(d, "{}", model.describe_input(&op.input));
        let _ = writeln!(
            d,
            "answer: {}",
            op.output().map_or_else(
                || "unknown (no return)".into(),
                |o| model.describe_output(o)
            )
        );
        let ret = op.ret().map_or_else(|| "never".into(), |r| unit.show(r));
        let _ = writeln!(d, "call {}, return {}", unit.show(op.call), ret);
        if let Some(&n) = order.get(&id) {
            let _ = writeln!(
                d,
                "linearized #{n}; state after: {}",
                clip(&model.describe_state(&states[n - 1]))
            );
        } else if id == cx.blocked {
            let _ = write!(
                d,
                "cannot be placed after the prefix; state there: {}",
                clip(&model.describe_state(&last_state))
            );
            if let Some(a) = model.answer(&last_state, &op.input) {
                let _ = write!(d, "; it would answer {}", model.describe_output(&a));
            }
        } else {
            d.push_str("not in the prefix");
        }
        let _ = write!(details, "\"{id}\":{},", js_string(d.trim_end()));
    }
    details.push('}');

    let summary = explain(model, history, cx);
    let note = if drawn.len() < cx.partition.ops.len() {
        format!(
            "<p class=note>Drawn: the {} operations nearest the blocked one, of {} in the partition.</p>",
            drawn.len(),
            cx.partition.ops.len()
        )
    } else {
        String::new()
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: not linearizable</title>
<style>{STYLE}</style></head>
<body>
<h1>{title}: not linearizable</h1>
<p>Partition <b>{label}</b>: {n} operations. The longest linearizable prefix found has {p};
operation {blocked_id} cannot be placed after it.</p>
<div class=legend><span class="key linearized">#n linearized, in order</span><span class="key blocked">✗ cannot be placed</span><span class="key open">not in the prefix</span><span class="key unknown">outcome unknown: took effect after its call, or never</span><span class="key line">had to take effect by here</span></div>
{note}<div id=details></div>
<div id=wrap><div id=lanes>{lanes_svg}</div><div id=chart>{svg}</div></div>
<details><summary>As text</summary><pre>{summary}</pre></details>
<script>const DETAILS = {details}; const BLOCKED = "{blocked_id}";
{SCRIPT}</script>
</body></html>
"#,
        title = esc(title),
        label = esc(&cx.partition.label),
        n = cx.partition.ops.len(),
        p = cx.prefix.len(),
        blocked_id = cx.blocked,
        summary = esc(&summary),
    )
}

/// The partition's operations to draw: all, or the `MAX_DRAWN` nearest the
/// blocked one in call order, plus every operation still open when the
/// blocked one was called.
fn window(history: &[Operation<impl Sized, impl Sized>], cx: &Counterexample) -> Vec<OpId> {
    let mut ids = cx.partition.ops.clone();
    if ids.len() <= MAX_DRAWN {
        return ids;
    }
    ids.sort_by_key(|&id| (history[id].call, id));
    let at = ids.iter().position(|&id| id == cx.blocked).unwrap_or(0);
    let lo = at.saturating_sub(MAX_DRAWN * 3 / 4);
    let hi = (lo + MAX_DRAWN).min(ids.len());
    let call = history[cx.blocked].call;
    let mut drawn: BTreeSet<OpId> = ids[lo..hi].iter().copied().collect();
    drawn.extend(
        ids[..lo]
            .iter()
            .filter(|&&id| history[id].ret().is_none_or(|r| r >= call)),
    );
    drawn.into_iter().collect()
}

/// A time unit that suits the history's largest time.
#[derive(Clone, Copy)]
struct Unit(f64, &'static str);

impl Unit {
    fn for_max(max: u64) -> Unit {
        match max {
            0..10_000 => Unit(1.0, "ns"),
            10_000..10_000_000 => Unit(1e3, "µs"),
            10_000_000..10_000_000_000 => Unit(1e6, "ms"),
            _ => Unit(1e9, "s"),
        }
    }

    fn show(self, t: u64) -> String {
        if self.0 == 1.0 {
            return format!("{t} ns");
        }
        let n = format!("{:.3}", t as f64 / self.0);
        let n = n.trim_end_matches('0').trim_end_matches('.');
        format!("{n} {}", self.1)
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 400;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Escapes text for HTML and SVG.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JavaScript string literal, safe inside a `<script>` element.
fn js_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; margin: 0 0 6px; }
p { margin: 4px 0; }
.note { color: #666; }
.legend { margin: 6px 0; }
.legend .key { display: inline-block; margin-right: 14px; padding: 1px 8px; border: 1.5px solid; border-radius: 4px; font-size: 12px; }
.key.linearized { background: #d8efd3; border-color: #3a7d34; }
.key.blocked { background: #fbd3d3; border-color: #c62828; border-width: 3px; }
.key.open { background: #ececec; border-color: #999; }
.key.unknown { background: #fff; border-color: #777; border-style: dashed; }
.key.line { border: none; border-left: 3px dashed #c62828; border-radius: 0; }
#details { position: sticky; top: 0; z-index: 2; background: #fffbe6; border: 1px solid #e0c060; padding: 6px 10px; white-space: pre-wrap; font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; min-height: 4.2em; margin: 8px 0; }
#wrap { display: flex; border: 1px solid #ccc; }
#lanes { flex: none; border-right: 1px solid #ccc; }
#chart { overflow-x: auto; flex: auto; }
text { font-size: 11px; }
.lane { font: bold 12px system-ui, sans-serif; fill: #444; }
.axis { fill: #555; font-size: 10px; }
.tick { stroke: #e4e4e4; stroke-width: 1; }
.deadline { stroke: #c62828; stroke-width: 2; stroke-dasharray: 6 4; }
.deadline-label { fill: #c62828; font-size: 11px; font-weight: bold; }
.op { cursor: pointer; }
.op rect { stroke-width: 1.5; }
.op.linearized rect { fill: #d8efd3; stroke: #3a7d34; }
.op.open rect { fill: #ececec; stroke: #999; }
.op.blocked rect { fill: #fbd3d3; stroke: #c62828; stroke-width: 3; }
.op.unknown rect { stroke-dasharray: 5 3; fill: url(#fade-open); }
.op.linearized.unknown rect { fill: url(#fade-lin); }
.op .badge { font-weight: bold; fill: #1f5f1a; }
.op.blocked .badge { fill: #c62828; }
.op .answer { fill: #333; }
.op:hover rect, .op.pinned rect { stroke: #1565c0; stroke-width: 3; }
"#;

const SCRIPT: &str = r#"
const box = document.getElementById('details');
let pinned = null;
function show(id) { box.textContent = DETAILS[id] || ''; }
function pin(id) {
  if (pinned) pinned.classList.remove('pinned');
  pinned = id === null ? null : document.getElementById('op-' + id);
  if (pinned) pinned.classList.add('pinned');
  show(id === null ? BLOCKED : id);
}
for (const el of document.querySelectorAll('.op')) {
  el.addEventListener('mouseenter', () => show(el.dataset.id));
  el.addEventListener('mouseleave', () => show(pinned ? pinned.dataset.id : BLOCKED));
  el.addEventListener('click', () => pin(pinned === el ? null : el.dataset.id));
}
const m = location.hash.match(/^#op-(\d+)$/);
pin(m && DETAILS[m[1]] ? m[1] : null);
const target = document.getElementById('op-' + (m ? m[1] : BLOCKED));
if (target) {
  const chart = document.getElementById('chart');
  const x = target.x.baseVal.value, w = target.width.baseVal.value;
  const left = w < chart.clientWidth * 0.7 ? x + w / 2 - chart.clientWidth / 2 : x - 60;
  chart.scrollLeft = Math.max(0, left);
  target.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  chart.scrollLeft = Math.max(0, left);
}
"#;
