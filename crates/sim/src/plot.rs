//! The propagation plot `powchain simulate --svg` writes: for every main-chain block, the
//! share of nodes that had connected it against the time since it was found (thin grey
//! steps), and the median over blocks (a thick line). Plain SVG, no library.

use std::fmt::Write;

use crate::report::Report;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// The plot of `report`'s arrival curves.
pub(crate) fn propagation_svg(report: &Report) -> String {
    let curves = &report.arrival_curves;
    let nodes = report.settings.nodes.max(1);
    // The x axis ends at the slowest block's p95 arrival, rounded up to 100 ms, so one
    // straggler does not squash the rest.
    let mut last_arrivals: Vec<u64> = curves
        .iter()
        .filter_map(|curve| curve.last().copied())
        .collect();
    last_arrivals.sort_unstable();
    let span = last_arrivals
        .get((last_arrivals.len() * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(1_000)
        .max(100)
        .div_ceil(100)
        * 100;
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |ms: u64| LEFT + plot_width * (ms.min(span) as f64 / span as f64);
    let y = |reached: usize| TOP + plot_height * (1.0 - reached as f64 / nodes as f64);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let settings = &report.settings;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="14">Block propagation: {} nodes, {:?} latency, seed {}, {} blocks</text>"#,
        settings.nodes,
        settings.latency,
        settings.seed,
        curves.len()
    );
    for quarter in 0..=4 {
        let level = y(nodes * quarter / 4);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{level:.1}" x2="{:.1}" y2="{level:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}%</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            level + 4.0,
            quarter * 25
        );
    }
    for step in 0..=5 {
        let ms = span * step / 5;
        let at = x(ms);
        let _ = writeln!(
            svg,
            r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{:.1}" stroke="#eee"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{ms} ms</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time since the block was found (simulated)</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 8.0
    );
    for curve in curves {
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="#999" stroke-opacity="0.35" points="{}"/>"##,
            steps(curve, &x, &y)
        );
    }
    let median = median_curve(curves);
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="#c0392b" stroke-width="2.5" points="{}"/>"##,
        steps(&median, &x, &y)
    );
    let _ = writeln!(svg, "</svg>");
    svg
}

/// The step line of one curve: the k-th arrival raises the share to k nodes.
fn steps(curve: &[u64], x: &impl Fn(u64) -> f64, y: &impl Fn(usize) -> f64) -> String {
    let mut points = String::new();
    let mut reached = 0;
    for ms in curve {
        let _ = write!(points, "{:.1},{:.1} ", x(*ms), y(reached));
        reached += 1;
        let _ = write!(points, "{:.1},{:.1} ", x(*ms), y(reached));
    }
    points.trim_end().to_owned()
}

/// For each k, the median over blocks of the k-th node's arrival (over the blocks that
/// reached k nodes).
fn median_curve(curves: &[Vec<u64>]) -> Vec<u64> {
    let longest = curves.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .map(|k| {
            let mut values: Vec<u64> = curves
                .iter()
                .filter_map(|curve| curve.get(k).copied())
                .collect();
            values.sort_unstable();
            values[values.len() / 2]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_curve_takes_each_arrival_s_median() {
        let curves = vec![vec![0, 10, 30], vec![0, 20, 40], vec![0, 30]];
        assert_eq!(median_curve(&curves), vec![0, 20, 40]);
        assert!(median_curve(&[]).is_empty());
    }
}
