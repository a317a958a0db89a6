//! A self-contained HTML report of one run: summary tables and plots (utilisation per cluster
//! over time, queue length, JCT distribution per tenant) drawn with `plotters` into inline SVG.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::engine::SimResult;

/// Renders the report. `Err` carries a drawing error in words.
pub fn html(result: &SimResult) -> Result<String, String> {
    let mut out = String::new();
    let t = &result.total;
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Switchyard simulation: {fleet}, {policy}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}</style></head><body>\n\
         <h1>Simulation of {fleet} under <code>{policy}</code></h1>\n\
         <p>Seed {seed}, failures {fail}. {jobs} job{s}, {done} completed, {unf} unfinished, {failed} failed, \
         {rej} skipped{services}; makespan {makespan:.2} h, {restarts} restart{rs}.</p>\n",
        fleet = escape(&result.fleet),
        policy = result.policy,
        seed = result.seed,
        fail = if result.failures_enabled { "on" } else { "off" },
        jobs = t.jobs,
        s = if t.jobs == 1 { "" } else { "s" },
        done = t.completed,
        unf = result.unfinished,
        failed = result.failed,
        rej = result.rejected,
        services = result.services_clause(),
        makespan = t.makespan_s / 3600.0,
        restarts = result.restarts,
        rs = if result.restarts == 1 { "" } else { "s" },
    );
    if let Some(note) = result.horizon_note() {
        let _ = writeln!(out, "<p><strong>{}</strong></p>", escape(&note));
    }
    out.push_str("<table><tr><th>scope</th><th>jobs</th><th>completed</th><th>avg JCT (h)</th><th>p50 JCT (h)</th><th>p99 JCT (h)</th><th>avg wait (h)</th><th>utilisation</th><th>goodput</th><th>cost (USD)</th><th>failures</th><th>preemptions</th></tr>\n");
    let mut row = |name: &str, f: &crate::engine::Figures| {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.0}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            f.jobs,
            f.completed,
            f.avg_jct_s / 3600.0,
            f.p50_jct_s / 3600.0,
            f.p99_jct_s / 3600.0,
            f.avg_wait_s / 3600.0,
            f.utilization * 100.0,
            f.goodput * 100.0,
            f.cost_usd,
            f.failures,
            f.preemptions
        );
    };
    row("whole fleet", t);
    for (name, c) in &result.clusters {
        row(
            &format!("{name} ({} × {})", c.accelerators, c.accelerator),
            &c.figures,
        );
    }
    out.push_str("</table>\n");

    out.push_str("<h2>Utilisation per cluster</h2>\n");
    out.push_str(&utilisation_svg(result)?);
    out.push_str("<h2>Queue length</h2>\n");
    out.push_str(&queue_svg(result)?);
    out.push_str("<h2>Job completion time per tenant (cumulative distribution)</h2>\n");
    out.push_str(&jct_svg(result)?);
    out.push_str("</body></html>\n");
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The series legend every plot of the report uses: lower right, on a translucent white box.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing the report failed: {e}")
}

fn hours_range(result: &SimResult) -> f64 {
    let s = &result.series;
    (s.t.last().copied().unwrap_or(0.0) / 3600.0).max(1e-3)
}

fn utilisation_svg(result: &SimResult) -> Result<String, String> {
    let s = &result.series;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..hours_range(result), 0f64..1.02f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("virtual time (h)")
            .y_desc("fraction of accelerators busy")
            .draw()
            .map_err(err)?;
        for (c, name) in s.cluster_names.iter().enumerate() {
            let color = Palette99::pick(c).to_rgba();
            let points =
                s.t.iter()
                    .zip(&s.utilization[c])
                    .map(|(t, u)| (t / 3600.0, *u));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn queue_svg(result: &SimResult) -> Result<String, String> {
    let s = &result.series;
    let max = s.queue.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..hours_range(result), 0f64..max * 1.05)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("virtual time (h)")
            .y_desc("jobs waiting")
            // Whole jobs: no tick at 0.5 on a short queue.
            .y_label_formatter(&|y| {
                if y.fract() == 0.0 {
                    format!("{y:.0}")
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(err)?;
        let points =
            s.t.iter()
                .zip(&s.queue)
                .map(|(t, q)| (t / 3600.0, *q as f64));
        chart
            .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn jct_svg(result: &SimResult) -> Result<String, String> {
    let max_h = result
        .tenant_jct
        .values()
        .flat_map(|v| v.iter())
        .fold(1.0f64 / 60.0, |m, &x| m.max(x / 3600.0));
    let min_h = result
        .tenant_jct
        .values()
        .flat_map(|v| v.iter())
        .fold(max_h, |m, &x| m.min((x / 3600.0).max(1.0 / 3600.0)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 380)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((min_h * 0.9..max_h * 1.1).log_scale(), 0f64..1.0f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("job completion time (h, log scale)")
            .y_desc("fraction of the tenant's jobs")
            .draw()
            .map_err(err)?;
        // At most 12 tenants by job count keep the legend readable.
        let mut tenants: Vec<(&String, &Vec<f64>)> = result.tenant_jct.iter().collect();
        tenants.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
        for (i, (name, jcts)) in tenants.into_iter().take(12).enumerate() {
            let mut v: Vec<f64> = jcts.iter().map(|x| (x / 3600.0).max(min_h)).collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let step = (v.len() / 500).max(1);
            // The distribution rises from 0 at the first completion: a tenant with one job is a
            // step there, not a single point no line is drawn through.
            let points: Vec<(f64, f64)> = v
                .first()
                .map(|&x| (x, 0.0))
                .into_iter()
                .chain(
                    v.iter()
                        .enumerate()
                        .filter(|(k, _)| k % step == 0 || *k + 1 == v.len())
                        .map(|(k, x)| (*x, (k + 1) as f64 / n)),
                )
                .collect();
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(err)?
                .label(format!(
                    "{name} ({} job{})",
                    jcts.len(),
                    if jcts.len() == 1 { "" } else { "s" }
                ))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        draw_legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
