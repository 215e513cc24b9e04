//! The sweep's plot: stored checks/s and p99 schedule lag against the number
//! of services, as one SVG with two panels (log x, log y), from the runs' JSON
//! objects. `--sweep` draws it after its runs; `--plot PATH --from FILE`
//! redraws it from saved JSON lines.

use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// The runs in `text`: one JSON object per line; other lines (the bench's
/// progress output) are skipped. A sweep's summary line stands for the runs in
/// its `sweep` array, and a run that appears twice (its own line and the
/// summary's array, when a whole output was saved) is taken once.
pub fn runs_from_lines(text: &str) -> Vec<Value> {
    let mut runs: Vec<Value> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('{')) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let items = match v.get("sweep").and_then(Value::as_array) {
            Some(a) => a.clone(),
            None => vec![v],
        };
        for r in items {
            if r.get("services").is_some() && r.get("checks_per_s").is_some() && !runs.contains(&r)
            {
                runs.push(r);
            }
        }
    }
    runs
}

/// "embedded, interval 1 s, 2026-11-25 20:44 UTC, commit 9e80eeb, nproc 2",
/// from the keys the runs carry (a sweep's runs carry `date`, `commit` and
/// `nproc`); what differs between runs is given as a range or a list.
pub fn caption(runs: &[Value]) -> String {
    let distinct = |key: &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in runs {
            let s = match r.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(v) if !v.is_null() => v.to_string(),
                _ => continue,
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    };
    let join = |what: &str, v: Vec<String>, unit: &str| match v.len() {
        0 => format!("{what} not recorded"),
        1 => format!("{what} {}{unit}", v[0]),
        _ => format!("{what} {}{unit} (per run)", v.join("/")),
    };
    let dates = distinct("date");
    let date = match dates.len() {
        0 => "date not recorded".to_owned(),
        1 => dates[0].clone(),
        _ => format!("{} to {}", dates[0], dates[dates.len() - 1]),
    };
    [
        distinct("mode").join("/"),
        join("interval", distinct("interval_s"), " s"),
        date,
        join("commit", distinct("commit"), ""),
        join("nproc", distinct("nproc"), ""),
    ]
    .join(", ")
}

/// 1000 → "1k", 2500000 → "2.5M", 0.5 → "0.5".
fn short(v: f64) -> String {
    let (x, unit) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let s = format!("{x:.1}");
    format!("{}{unit}", s.trim_end_matches(".0"))
}

/// A log axis's label: 1, 2 and 5 times a power of ten, the others blank
/// (plotters puts a key point at every 100 of 100..1000 on a short axis).
fn tick(v: f64) -> String {
    let mantissa = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0]
        .iter()
        .any(|m| (mantissa - m).abs() < 1e-6)
    {
        short(v)
    } else {
        String::new()
    }
}

/// A log axis over `values` (each taken as at least `floor`), with a margin.
/// plotters labels a log axis from its first power of ten on, so the axis
/// starts at a power of ten when the smallest value lies below the first one.
fn log_range(values: impl Iterator<Item = f64>, floor: f64) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values {
        lo = lo.min(v.max(floor));
        hi = hi.max(v.max(floor));
    }
    if lo > hi {
        (lo, hi) = (floor, floor * 10.0);
    }
    let start = lo / 1.6;
    let first_label = 10f64.powf(start.log10().ceil());
    let start = if first_label <= lo {
        start
    } else {
        10f64.powf(lo.log10().floor())
    };
    start..hi * 1.6
}

const MODE_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const REFERENCE: RGBColor = RGBColor(110, 110, 110);

/// One run as plotted.
#[derive(Clone, Copy)]
struct Point {
    services: f64,
    checks_per_s: f64,
    lag_p99_ms: f64,
    due_per_s: f64,
    interval_ms: f64,
}

/// One panel: a solid line with points per mode, a dashed reference line.
struct Panel<'a> {
    title: &'a str,
    y_desc: &'a str,
    label: &'a str,
    reference_label: &'a str,
    value: fn(&Point) -> f64,
    reference: fn(&Point) -> f64,
}

/// Draws the two panels of `runs` into the SVG file `path`.
pub fn draw(runs: &[Value], path: &Path, caption: &str) -> Result<(), String> {
    let num = |r: &Value, k: &str| r.get(k).and_then(Value::as_f64);
    // Per mode, its runs by services.
    let mut series: Vec<(String, Vec<Point>)> = Vec::new();
    for r in runs {
        let (Some(n), Some(rate)) = (num(r, "services"), num(r, "checks_per_s")) else {
            continue;
        };
        let interval = num(r, "interval_s").unwrap_or(1.0).max(1e-3);
        let p = Point {
            services: n,
            checks_per_s: rate,
            lag_p99_ms: num(r, "lag_p99_ms").unwrap_or(0.0),
            due_per_s: n / interval,
            interval_ms: interval * 1000.0,
        };
        let mode = r.get("mode").and_then(Value::as_str).unwrap_or("?");
        match series.iter_mut().find(|(m, _)| m == mode) {
            Some((_, pts)) => pts.push(p),
            None => series.push((mode.to_owned(), vec![p])),
        }
    }
    if series.is_empty() {
        return Err("no runs to plot (JSON lines with \"services\" and \"checks_per_s\")".into());
    }
    for (_, pts) in &mut series {
        pts.sort_by(|a, b| a.services.total_cmp(&b.services));
    }

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 880)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(
        "healthmon pipeline benchmark: stored checks/s and p99 schedule lag against services",
        (20, 14),
        ("sans-serif", 19).into_font().style(FontStyle::Bold),
    ))
    .map_err(|e| err(&e))?;
    head.draw(&Text::new(
        caption.to_owned(),
        (20, 44),
        ("sans-serif", 15).into_font().color(&RGBColor(60, 60, 60)),
    ))
    .map_err(|e| err(&e))?;
    let areas = body.split_evenly((2, 1));
    let panels = [
        Panel {
            title: "stored checks/s (solid) and due checks/s = services / interval (dashed)",
            y_desc: "checks/s (log scale; 0 drawn as 1)",
            label: "stored",
            reference_label: "due (services / interval)",
            value: |p| p.checks_per_s,
            reference: |p| p.due_per_s,
        },
        // A job that waited a whole interval is dropped as stale.
        Panel {
            title: "p99 schedule lag at the target (solid) and the interval (dashed)",
            y_desc: "p99 lag, ms (log scale; 0 drawn as 1)",
            label: "p99 lag",
            reference_label: "interval",
            value: |p| p.lag_p99_ms,
            reference: |p| p.interval_ms,
        },
    ];
    for (area, panel) in areas.iter().zip(&panels) {
        draw_panel(area, panel, &series).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type Area<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_panel(area: &Area, panel: &Panel, series: &[(String, Vec<Point>)]) -> DrawResult {
    let all = || series.iter().flat_map(|(_, pts)| pts.iter());
    let floor = |v: f64| v.max(1.0);
    // The reference per services count, over every mode.
    let mut reference: Vec<(f64, f64)> = all()
        .map(|p| (p.services, floor((panel.reference)(p))))
        .collect();
    reference.sort_by(|a, b| a.0.total_cmp(&b.0));
    reference.dedup_by(|a, b| a.0 == b.0);

    let x = log_range(all().map(|p| p.services), 1.0);
    let y = log_range(
        all().flat_map(|p| [(panel.value)(p), (panel.reference)(p)]),
        1.0,
    );
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 16))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(44)
        .y_label_area_size(76)
        .build_cartesian_2d(x.log_scale(), y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("services (log scale)")
        .y_desc(panel.y_desc)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    for (i, (mode, pts)) in series.iter().enumerate() {
        let c = MODE_COLOURS[i % MODE_COLOURS.len()];
        let xy = |p: &Point| (p.services, floor((panel.value)(p)));
        chart
            .draw_series(LineSeries::new(pts.iter().map(xy), c.stroke_width(2)))?
            .label(format!("{}, {mode}", panel.label))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(xy(p), 4, c.filled())))?;
    }
    // The reference on top, so that it shows where a run is right on it.
    let grey = REFERENCE.stroke_width(2);
    chart
        .draw_series(DashedLineSeries::new(reference, 8, 5, grey))?
        .label(panel.reference_label)
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new([(0, 0), (9, 0)], grey)
                + PathElement::new([(15, 0), (24, 0)], grey)
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
}
