//! `plait matrix --plot FILE.svg`: the measured columns as bar charts, one panel each,
//! strands side by side, on log scales (the strands differ by orders of magnitude).

use std::path::Path;

use plotters::prelude::*;

use super::Row;

/// A chart's title, and the figure of a row it shows.
type Panel = (&'static str, fn(&Row) -> f64);

pub(crate) fn draw(path: &Path, rows: &[Row], machine: &str) -> Result<(), String> {
    let failed = |error: &dyn std::fmt::Display| format!("cannot draw {}: {error}", path.display());
    let panels: [Panel; 6] = [
        ("tiny tasks per second", |r| r.measured.tiny_per_s),
        ("CPU kernel: speedup over serial", |r| {
            r.measured.cpu_speedup
        }),
        ("10 ms waits per second", |r| r.measured.waits_per_s),
        ("payload MiB per second", |r| r.measured.payload_mib_per_s),
        ("start-up, microseconds", |r| r.measured.start_up_s * 1e6),
        ("memory per task (per worker process), bytes", |r| {
            r.measured.memory_per_task_bytes
        }),
    ];
    let root = SVGBackend::new(path, (1500, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root
        .titled(
            &format!("plait matrix, measured on {machine}"),
            ("sans-serif", 24),
        )
        .map_err(|e| failed(&e))?;
    let names: Vec<&str> = rows.iter().map(|row| row.strand).collect();
    let colors = [
        RGBColor(200, 80, 60),
        RGBColor(60, 110, 200),
        RGBColor(70, 160, 90),
    ];
    for (area, (title, value)) in root.split_evenly((2, 3)).iter().zip(panels) {
        let values: Vec<f64> = rows.iter().map(|row| value(row).max(1e-9)).collect();
        let low = values.iter().copied().fold(f64::INFINITY, f64::min) / 4.0;
        let high = values.iter().copied().fold(0.0, f64::max) * 4.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d((0..names.len()).into_segmented(), (low..high).log_scale())
            .map_err(|e| failed(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => names.get(*i).copied().unwrap_or("").to_owned(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.3e}"))
            .draw()
            .map_err(|e| failed(&e))?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), low),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    colors[i % colors.len()].filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(|e| failed(&e))?;
    }
    root.present().map_err(|e| failed(&e))
}
