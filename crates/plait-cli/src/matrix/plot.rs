//! `plait matrix --plot FILE.svg`: the measured columns as bar charts, one panel each, one
//! unit per panel. Figures that differ by orders of magnitude between strands are drawn
//! on a log axis, said so in the panel's title, from a power of ten; the speedup on a
//! linear axis from zero.

use std::path::Path;

use plotters::prelude::*;

use super::Row;

/// One panel: its title, whether its axis is logarithmic, and its bars (a label, a value);
/// a panel without bars shows its title as a note (a figure of one strand alone).
struct Panel {
    title: String,
    log: bool,
    bars: Vec<(String, f64)>,
}

/// Checks that `path` names an SVG file that can be written, before anything is measured.
///
/// # Errors
///
/// Another extension, or a file that cannot be created there (saying why).
pub(crate) fn check(path: &Path) -> Result<(), String> {
    if path.extension().is_none_or(|ext| ext != "svg") {
        return Err(format!(
            "--plot {} must name an .svg file: the chart is drawn as SVG",
            path.display()
        ));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| format!("--plot {}: cannot write there: {e}", path.display()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

fn panels(rows: &[Row]) -> Vec<Panel> {
    let all = |f: fn(&Row) -> f64| -> Vec<(String, f64)> {
        rows.iter().map(|r| (r.strand.to_owned(), f(r))).collect()
    };
    let of = |strand: &str| rows.iter().find(|r| r.strand == strand);
    let mut memory = Vec::new();
    if let Some(thread) = of("thread") {
        memory.push((
            "thread, queued".to_owned(),
            thread.measured.memory_per_task_bytes,
        ));
    }
    if let Some(coroutine) = of("coroutine") {
        memory.push((
            "coroutine, idle".to_owned(),
            coroutine.measured.memory_per_task_bytes,
        ));
    }
    let worker = of("process").map_or_else(String::new, |p| {
        format!(
            "memory per worker process: {:.1} MiB resident (the process strand's unit; threads and coroutines have none of their own)",
            p.measured.memory_per_task_bytes / 1_048_576.0
        )
    });
    let panel = |title: &str, log: bool, bars: Vec<(String, f64)>| Panel {
        title: title.to_owned(),
        log,
        bars,
    };
    vec![
        panel(
            "tiny tasks per second (log scale)",
            true,
            all(|r| r.measured.tiny_per_s),
        ),
        panel(
            "CPU kernel: speedup over serial",
            false,
            all(|r| r.measured.cpu_speedup),
        ),
        panel(
            "10 ms waits per second (log scale)",
            true,
            all(|r| r.measured.waits_per_s),
        ),
        panel(
            "payload through a task, MiB/s (log scale)",
            true,
            all(|r| r.measured.payload_mib_per_s),
        ),
        panel(
            "start-up of one unit, µs (log scale)",
            true,
            all(|r| r.measured.start_up_s * 1e6),
        ),
        panel("memory per waiting task, bytes", false, memory),
        panel(&worker, false, Vec::new()),
        panel(
            "a crash, until reported, µs (log scale)",
            true,
            all(|r| r.measured.crash_s * 1e6),
        ),
    ]
}

/// A tick label a person reads at a glance: 20, 1.5k, 6M, 0.5.
fn readable(value: f64) -> String {
    let (scaled, suffix) = match value.abs() {
        v if v >= 1e9 => (value / 1e9, "G"),
        v if v >= 1e6 => (value / 1e6, "M"),
        v if v >= 1e3 => (value / 1e3, "k"),
        _ => (value, ""),
    };
    let text = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 1.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    format!("{}{suffix}", text.trim_end_matches(".0"))
}

pub(crate) fn draw(path: &Path, rows: &[Row], machine: &str, samples: u32) -> Result<(), String> {
    let failed = |error: &dyn std::fmt::Display| format!("cannot draw {}: {error}", path.display());
    let root = SVGBackend::new(path, (1800, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root
        .titled(
            &format!(
                "plait matrix, measured on {machine}: {}",
                if samples == 1 {
                    "one sample".to_owned()
                } else {
                    format!("medians of {samples} samples")
                }
            ),
            ("sans-serif", 24),
        )
        .map_err(|e| failed(&e))?;
    let colors = [
        RGBColor(200, 80, 60),
        RGBColor(60, 110, 200),
        RGBColor(70, 160, 90),
    ];
    let color_of = |label: &str| match label.split(',').next() {
        Some("process") => colors[0],
        Some("thread") => colors[1],
        _ => colors[2],
    };
    for (area, panel) in root.split_evenly((2, 4)).iter().zip(panels(rows)) {
        if panel.bars.is_empty() {
            // A figure of one strand: said, not drawn as a lone bar.
            let (width, height) = area.dim_in_pixel();
            let mut line = String::new();
            let mut y = i32::try_from(height / 3).unwrap_or(0);
            for word in panel.title.split(' ') {
                if line.len() + word.len() > 40 {
                    area.draw(&Text::new(line.clone(), (20, y), ("sans-serif", 18)))
                        .map_err(|e| failed(&e))?;
                    line.clear();
                    y += 26;
                }
                line = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
            }
            area.draw(&Text::new(line, (20, y), ("sans-serif", 18)))
                .map_err(|e| failed(&e))?;
            let _ = width;
            continue;
        }
        let names: Vec<String> = panel.bars.iter().map(|(name, _)| name.clone()).collect();
        let values: Vec<f64> = panel.bars.iter().map(|(_, v)| *v).collect();
        let high = values.iter().copied().fold(0.0, f64::max);
        // One segment per bar: the range's end is a segment of its own.
        let slots = (0..names.len().saturating_sub(1)).into_segmented();
        let label = |x: &SegmentValue<usize>| match x {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&panel.title, ("sans-serif", 17))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60);
        let bar = |i: usize, bottom: f64, v: f64| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), bottom),
                    (SegmentValue::Exact(i + 1), v),
                ],
                color_of(&names[i]).filled(),
            );
            bar.set_margin(0, 0, 14, 14);
            bar
        };
        if panel.log {
            let positive = values.iter().copied().filter(|v| *v > 0.0);
            let low = positive.fold(f64::INFINITY, f64::min);
            let low = if low.is_finite() {
                10_f64.powf(low.log10().floor())
            } else {
                1.0
            };
            let top = 10_f64.powf(high.max(low * 10.0).log10().ceil());
            let mut chart = builder
                .build_cartesian_2d(slots, (low..top).log_scale())
                .map_err(|e| failed(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&label)
                .y_label_formatter(&|y| readable(*y))
                .draw()
                .map_err(|e| failed(&e))?;
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| bar(i, low, v.max(low))),
                )
                .map_err(|e| failed(&e))?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(slots, 0.0..(high * 1.15).max(1e-9))
                .map_err(|e| failed(&e))?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_label_formatter(&label)
                .y_label_formatter(&|y| readable(*y))
                .draw()
                .map_err(|e| failed(&e))?;
            chart
                .draw_series(values.iter().enumerate().map(|(i, &v)| bar(i, 0.0, v)))
                .map_err(|e| failed(&e))?;
        }
    }
    root.present().map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn ticks_read_at_a_glance() {
        assert_eq!(readable(1000.0), "1k");
        assert_eq!(readable(1500.0), "1.5k");
        assert_eq!(readable(6_000_000.0), "6M");
        assert_eq!(readable(20.0), "20");
        assert_eq!(readable(0.5), "0.50");
        assert_eq!(readable(250_000.0), "250k");
    }
}
