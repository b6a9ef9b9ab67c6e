//! PNG line charts (plotters): a job's training and validation loss by
//! step, evaluation metrics across model versions, the demo's metrics over
//! iterations. Drawn in memory; text needs a system TrueType font (DejaVu,
//! Liberation or Noto), and without one the chart is drawn unlabelled
//! rather than not at all.

use crate::{EvalError, Result};
use plotters::prelude::*;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The caption.
    pub title: String,
    /// What x is.
    pub x_desc: String,
    /// What y is.
    pub y_desc: String,
    /// The lines (at most 8 are told apart by colour).
    pub series: Vec<Series>,
    /// Label x with integers (iterations, versions).
    pub integer_x: bool,
    /// Pixels.
    pub size: (u32, u32),
}

/// A drawn chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Png {
    /// The PNG file.
    pub bytes: Vec<u8>,
    /// Whether text could be drawn (a system font was found).
    pub labelled: bool,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(200, 40, 40),
    RGBColor(30, 100, 200),
    RGBColor(40, 150, 60),
    RGBColor(220, 140, 20),
    RGBColor(130, 60, 170),
    RGBColor(20, 150, 150),
    RGBColor(120, 120, 120),
    RGBColor(180, 80, 120),
];

/// A sans-serif TrueType font of the system, registered with plotters
/// (`None`: none found).
fn font() -> Option<&'static str> {
    const CANDIDATES: [&str; 4] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/System/Library/Fonts/Supplemental/Arial.ttf",
    ];
    static FOUND: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let bytes = CANDIDATES.iter().find_map(|p| std::fs::read(p).ok())?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).ok()?;
        Some("sans-serif")
    })
}

/// The range of `v` with a margin, never empty.
fn span(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-3);
    (lo - pad, hi + pad)
}

/// Draws `c` as a PNG.
pub fn render(c: &Chart) -> Result<Png> {
    let (w, h) = c.size;
    let font = font();
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    // Points that are not numbers (a diverged loss) are left out.
    let finite: Vec<Vec<(f64, f64)>> = c
        .series
        .iter()
        .map(|s| s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect())
        .collect();
    let pts = || finite.iter().flatten();
    let (x0, x1) = span(pts().map(|p| p.0));
    let (y0, y1) = span(pts().map(|p| p.1));
    let draw = |rgb: &mut [u8]| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(rgb, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut b = ChartBuilder::on(&root);
        b.margin(20).x_label_area_size(40).y_label_area_size(60);
        if let Some(f) = font {
            b.caption(&c.title, (f, 22));
        }
        let mut chart = b.build_cartesian_2d(x0..x1, y0..y1)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_labels(10);
        let int = |x: &f64| format!("{x:.0}");
        if let Some(f) = font {
            mesh.x_desc(c.x_desc.as_str()).y_desc(c.y_desc.as_str()).label_style((f, 14));
            if c.integer_x {
                mesh.x_label_formatter(&int);
            }
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        mesh.draw()?;
        for (i, (s, points)) in c.series.iter().zip(&finite).enumerate() {
            let color = COLORS[i % COLORS.len()];
            if points.len() < 40 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            }
            let line = chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?;
            if font.is_some() {
                line.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            }
        }
        if let Some(f) = font {
            chart
                .configure_series_labels()
                .label_font((f, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }
        root.present()?;
        Ok(())
    };
    draw(&mut rgb).map_err(|e| EvalError::Chart(e.to_string()))?;
    let mut bytes = Vec::new();
    let img = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| EvalError::Chart("the pixel buffer has the wrong size".into()))?;
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png)
        .map_err(|e| EvalError::Chart(e.to_string()))?;
    Ok(Png { bytes, labelled: font.is_some() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_of_its_size_even_when_empty_or_flat() {
        for series in [
            vec![],
            vec![Series { name: "flat".into(), points: vec![(1.0, 2.0), (2.0, 2.0)] }],
            vec![
                Series {
                    name: "train".into(),
                    points: (0..500).map(|i| (i as f64, 1.0 / (1.0 + i as f64))).collect(),
                },
                Series {
                    name: "valid".into(),
                    points: vec![(100.0, 0.3), (200.0, f64::NAN), (300.0, 0.2)],
                },
            ],
        ] {
            let c = Chart {
                title: "loss".into(),
                x_desc: "step".into(),
                y_desc: "loss".into(),
                series,
                integer_x: true,
                size: (320, 200),
            };
            let png = render(&c).unwrap();
            assert_eq!(&png.bytes[..8], b"\x89PNG\r\n\x1a\n");
            let img = image::load_from_memory(&png.bytes).unwrap();
            assert_eq!((img.width(), img.height()), (320, 200));
        }
    }
}
