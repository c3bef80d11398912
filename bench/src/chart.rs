//! `latest.png`: throughput and p99 against concurrency for the ceilings, the receiver and the
//! naive handler, and the stall comparison over time. Drawn with plotters' bitmap backend and
//! DejaVu Sans embedded in the binary, so it renders the same on any machine, fonts or not.

use std::{ops::Range, path::Path};

use anyhow::anyhow;
use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};

use crate::report::Report;

/// Series of the concurrency panels: (figure key prefix, legend, colour).
const SERIES: [(&str, &str, RGBColor); 4] = [
    ("http", "HTTP ceiling", RGBColor(120, 120, 120)),
    ("broker", "broker ceiling", RGBColor(230, 140, 20)),
    ("receiver", "receiver (ours)", RGBColor(20, 110, 200)),
    ("naive", "naive handler", RGBColor(200, 40, 40)),
];

const FONT: &str = "sans-serif";

/// Size of the picture in pixels.
const SIZE: (u32, u32) = (1800, 620);

/// Draws the chart and writes it to `path` as a PNG.
pub fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let mut pixels = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    render(report, &mut pixels)?;
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
}

/// Draws into an RGB buffer of [`SIZE`].
fn render(report: &Report, pixels: &mut [u8]) -> anyhow::Result<()> {
    // Idempotent: registering again replaces the same font.
    register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow!("the embedded font does not parse"))?;
    let root = BitMapBackend::with_buffer(pixels, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!(
        "Blitz webhooks · {} · {} · {} cores · median of {} run(s){}",
        report.meta.started_at,
        report.meta.revision,
        report.meta.cores,
        report.settings.runs,
        if report.settings.quick {
            " · QUICK run"
        } else {
            ""
        }
    );
    let root = root.titled(&title, (FONT, 24)).map_err(plot_error)?;
    let panels = root.split_evenly((1, 3));
    throughput_panel(report, &panels[0])?;
    latency_panel(report, &panels[1])?;
    stall_panel(report, &panels[2])?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// Concurrency positions: evenly spaced slots labelled with the concurrency.
fn slots(report: &Report) -> (Vec<usize>, Range<f64>) {
    let cs = report.settings.concurrencies.clone();
    let end = cs.len() as f64 - 0.7;
    (cs, -0.3..end)
}

fn series(
    report: &Report,
    prefix: &str,
    value: impl Fn(&crate::results::Sample) -> Option<f64>,
) -> Vec<(f64, f64)> {
    report
        .settings
        .concurrencies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let sample = report.get(&format!("{prefix}.c{c}"))?;
            Some((i as f64, value(sample)?))
        })
        .collect()
}

fn throughput_panel(
    report: &Report,
    area: &DrawingArea<BitMapBackend, Shift>,
) -> anyhow::Result<()> {
    let (cs, x) = slots(report);
    let all: Vec<Vec<(f64, f64)>> = SERIES
        .iter()
        .map(|(prefix, _, _)| series(report, prefix, |s| Some(s.throughput)))
        .collect();
    let top = all.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput (per second)", (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(x, 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (clients)")
        .x_labels(cs.len())
        .x_label_formatter(&|v| label(&cs, *v))
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_error)?;
    for ((_, name, colour), points) in SERIES.iter().zip(&all) {
        draw_series(&mut chart, points, name, *colour)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn latency_panel(report: &Report, area: &DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()> {
    let (cs, x) = slots(report);
    let all: Vec<Vec<(f64, f64)>> = SERIES
        .iter()
        .map(|(prefix, _, _)| series(report, prefix, |s| s.latency.map(|l| l.p99_ms.max(0.01))))
        .collect();
    let top = all.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 2.0;
    let bottom = all.iter().flatten().map(|p| p.1).fold(top, f64::min) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption("p99 latency (ms, log scale)", (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(x, (bottom.max(0.01)..top).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (clients)")
        .x_labels(cs.len())
        .x_label_formatter(&|v| label(&cs, *v))
        .y_label_formatter(&|v| format!("{v}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_error)?;
    for ((_, name, colour), points) in SERIES.iter().zip(&all) {
        draw_series(&mut chart, points, name, *colour)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn stall_panel(report: &Report, area: &DrawingArea<BitMapBackend, Shift>) -> anyhow::Result<()> {
    let Some(stall) = &report.stall else {
        area.draw(&Text::new(
            "stall comparison not run",
            (40, 60),
            (FONT, 18).into_font(),
        ))
        .map_err(plot_error)?;
        return Ok(());
    };
    // 200s per second, from 0.5 s buckets.
    let per_second = |side: &crate::results::StallSide| -> Vec<(f64, f64)> {
        side.timeline
            .iter()
            .map(|&(t, ok, _, _)| (t + 0.25, ok as f64 * 2.0))
            .collect()
    };
    let receiver = per_second(&stall.receiver);
    let naive = per_second(&stall.naive);
    let end = receiver
        .iter()
        .chain(&naive)
        .map(|p| p.0)
        .fold(1.0, f64::max)
        + 0.5;
    let top = receiver
        .iter()
        .chain(&naive)
        .map(|p| p.1)
        .fold(stall.rate_per_s, f64::max)
        * 1.3;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Postgres locked {:.0} s: timely 200s per second ({:.0}/s due)",
                stall.receiver.held_s, stall.rate_per_s
            ),
            (FONT, 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0f64..end, 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started (by due time)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_error)?;
    for (side, colour) in [(&stall.receiver, SERIES[2].2), (&stall.naive, SERIES[3].2)] {
        let from = side.lock_requested_at_s;
        let to = from + side.lock_wait_s + side.held_s;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(from, 0.0), (to, top)],
                colour.mix(0.08).filled(),
            )))
            .map_err(plot_error)?;
    }
    // The naive handler first, so the receiver's line stays visible where both answer.
    draw_series(&mut chart, &naive, "naive handler", SERIES[3].2)?;
    draw_series(&mut chart, &receiver, "receiver (ours)", SERIES[2].2)?;
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_series<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    points: &[(f64, f64)],
    name: &str,
    colour: RGBColor,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(
            points.iter().copied(),
            colour.stroke_width(3),
        ))
        .map_err(plot_error)?
        .label(name.to_owned())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(3)));
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
        .map_err(plot_error)?;
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

/// The concurrency of slot `slot`; nothing between slots.
fn label(cs: &[usize], slot: f64) -> String {
    if (slot - slot.round()).abs() > 1e-6 || slot < 0.0 {
        return String::new();
    }
    cs.get(slot.round() as usize)
        .map_or(String::new(), |c| c.to_string())
}

fn plot_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("drawing the chart: {error:?}")
}
