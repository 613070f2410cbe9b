//! Editor-facing reports (the monthly report, issue 19): one self-contained HTML page with its
//! charts drawn as inline SVG, and each table also as CSV. Nothing refers outside the page (no
//! scripts, fonts, stylesheets or images to fetch), so it opens the same from S3, a mail
//! attachment or a laptop offline. Rendering is deterministic: the same data gives the same
//! bytes, so a re-run of a month rewrites an identical object.

use std::fmt::Write as _;

/// Bar labels and x labels longer than this (in characters, not bytes) are cut with "…".
const MAX_LABEL_CHARS: usize = 24;
const PALETTE: [&str; 6] = [
    "#2f6fdf", "#e0762b", "#2a9d6a", "#b3438f", "#7a6ad8", "#c4a329",
];

/// Horizontal bars, one per label: long (Korean) titles fit on the left.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub unit: String,
    pub bars: Vec<(String, f64)>,
}

/// One or more series over the same x labels (the days of a month).
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub unit: String,
    pub x_labels: Vec<String>,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    Bar(BarChart),
    Line(LineChart),
}

/// Escapes text for HTML and SVG, in content and in attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// Non-finite values draw as 0 and never print as "NaN" or "inf".
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A number as a label: whole numbers with thousands separators, others with up to 3 decimals.
pub fn number(x: f64) -> String {
    let x = finite(x);
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let digits = format!("{}", x.abs() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 { format!("-{out}") } else { out }
    } else {
        let text = format!("{x:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A round axis maximum and its ticks (0 and four steps of 1, 2, 2.5 or 5 × 10^n).
fn ticks(max: f64) -> Vec<f64> {
    let max = finite(max).max(0.0);
    if max == 0.0 {
        return vec![0.0, 1.0];
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let count = (max / step).ceil().max(1.0) as usize;
    (0..=count).map(|i| step * i as f64).collect()
}

fn no_data(out: &mut String, width: f64, height: f64) {
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#777">no data</text>"##,
        width / 2.0,
        height / 2.0
    );
}

impl Chart {
    pub fn svg(&self) -> String {
        match self {
            Self::Bar(chart) => chart.svg(),
            Self::Line(chart) => chart.svg(),
        }
    }
}

impl BarChart {
    fn svg(&self) -> String {
        let (left, right, top, row) = (190.0, 70.0, 34.0, 22.0);
        let width = 720.0;
        let height = top + row * self.bars.len().max(3) as f64 + 28.0;
        let mut out = svg_open(&self.title, width, height);
        if self.bars.is_empty() {
            no_data(&mut out, width, height);
            out.push_str("</svg>");
            return out;
        }
        let axis = ticks(self.bars.iter().map(|b| finite(b.1)).fold(0.0, f64::max));
        let top_value = axis.last().copied().unwrap_or(1.0);
        let plot = width - left - right;
        for tick in &axis {
            let x = left + plot * tick / top_value;
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555">{}</text>"##,
                height - 24.0,
                height - 10.0,
                escape(&number(*tick))
            );
        }
        for (i, (label, value)) in self.bars.iter().enumerate() {
            let value = finite(*value).max(0.0);
            let y = top + row * i as f64;
            let w = plot * value / top_value;
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12" fill="#222">{}</text><rect x="{left:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="11" fill="#333">{}</text>"##,
                left - 8.0,
                y + 15.0,
                escape(&shorten(label)),
                y + 3.0,
                row - 6.0,
                PALETTE[0],
                escape(label),
                escape(&number(value)),
                left + w + 4.0,
                y + 15.0,
                escape(&number(value)),
            );
        }
        out.push_str("</svg>");
        out
    }
}

impl LineChart {
    fn svg(&self) -> String {
        let (left, right, top, bottom) = (60.0, 20.0, 34.0, 60.0);
        let (width, height) = (720.0, 300.0);
        let mut out = svg_open(&self.title, width, height);
        let points = self.x_labels.len();
        if points == 0 || self.series.iter().all(|s| s.values.is_empty()) {
            no_data(&mut out, width, height);
            out.push_str("</svg>");
            return out;
        }
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().copied().map(finite))
            .fold(0.0, f64::max);
        let axis = ticks(max);
        let top_value = axis.last().copied().unwrap_or(1.0);
        let (plot_w, plot_h) = (width - left - right, height - top - bottom);
        let x_at = |i: usize| {
            if points == 1 {
                left + plot_w / 2.0
            } else {
                left + plot_w * i as f64 / (points - 1) as f64
            }
        };
        let y_at = |v: f64| top + plot_h - plot_h * finite(v).max(0.0) / top_value;
        for tick in &axis {
            let y = y_at(*tick);
            let _ = write!(
                out,
                r##"<line x1="{left:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
                width - right,
                left - 6.0,
                y + 4.0,
                escape(&number(*tick))
            );
        }
        // At most about 16 x labels, evenly spaced, so a month's days stay legible.
        let every = points.div_ceil(16).max(1);
        for (i, label) in self.x_labels.iter().enumerate() {
            if i % every == 0 || i + 1 == points {
                let _ = write!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#555">{}</text>"##,
                    x_at(i),
                    top + plot_h + 16.0,
                    escape(&shorten(label))
                );
            }
        }
        for (n, series) in self.series.iter().enumerate() {
            let colour = PALETTE[n % PALETTE.len()];
            let path: Vec<String> = series
                .values
                .iter()
                .take(points)
                .enumerate()
                .map(|(i, v)| format!("{:.1},{:.1}", x_at(i), y_at(*v)))
                .collect();
            let _ = write!(
                out,
                r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
                path.join(" ")
            );
            if points == 1 || series.values.len() == 1 {
                let _ = write!(
                    out,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"##,
                    x_at(0),
                    y_at(series.values.first().copied().unwrap_or(0.0))
                );
            }
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#222">{}</text>"##,
                left + 150.0 * n as f64,
                height - 22.0,
                left + 150.0 * n as f64 + 14.0,
                height - 13.0,
                escape(&shorten(&series.name))
            );
        }
        out.push_str("</svg>");
        out
    }
}

fn svg_open(title: &str, width: f64, height: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {width:.0} {height:.0}" width="100%" role="img" aria-label="{t}"><title>{t}</title><text x="8" y="20" font-size="14" font-weight="600" fill="#111">{t}</text>"##,
        t = escape(title)
    );
    out
}

/// A table of the report, also written as CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// RFC 4180 CSV (CRLF, quoted where needed). It starts with a UTF-8 byte order mark because
    /// Excel, which editors open CSV with, reads Korean text as mojibake without one. A cell that
    /// a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is prefixed with a quote,
    /// unless it is a plain number.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("\u{feff}");
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }

    pub fn to_html(&self) -> String {
        let mut out = String::from("<table><thead><tr>");
        for header in &self.headers {
            let _ = write!(out, "<th>{}</th>", escape(header));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        out
    }
}

fn csv_cell(cell: &str) -> String {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && cell.parse::<f64>().is_err();
    let cell = if risky {
        format!("'{cell}")
    } else {
        cell.to_owned()
    };
    if cell.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub heading: String,
    pub note: Option<String>,
    pub chart: Option<Chart>,
    pub table: Option<Table>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    /// Headline figures: (label, value).
    pub highlights: Vec<(String, String)>,
    pub sections: Vec<Section>,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Apple SD Gothic Neo','Malgun Gothic',sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#111}\
h1{font-size:1.6rem;margin-bottom:.2rem}.sub{color:#555;margin-top:0}\
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0}.card{border:1px solid #ddd;border-radius:8px;padding:.75rem 1rem;min-width:140px}\
.card b{display:block;font-size:1.3rem}.card span{color:#555;font-size:.85rem}\
section{margin:2rem 0;break-inside:avoid}table{border-collapse:collapse;width:100%;font-size:.85rem;margin-top:.75rem}\
th,td{border-bottom:1px solid #e5e5e5;padding:.3rem .5rem;text-align:left}th{background:#f6f6f6}.note{color:#555;font-size:.9rem}";

impl Report {
    pub fn to_html(&self) -> String {
        let mut out =
            String::from("<!DOCTYPE html>\n<html lang=\"ko\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        let _ = write!(
            out,
            "<title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p class=\"sub\">{}</p><div class=\"cards\">",
            escape(&self.title),
            escape(&self.title),
            escape(&self.subtitle)
        );
        for (label, value) in &self.highlights {
            let _ = write!(
                out,
                "<div class=\"card\"><b>{}</b><span>{}</span></div>",
                escape(value),
                escape(label)
            );
        }
        out.push_str("</div>");
        for section in &self.sections {
            let _ = write!(out, "<section><h2>{}</h2>", escape(&section.heading));
            if let Some(note) = &section.note {
                let _ = write!(out, "<p class=\"note\">{}</p>", escape(note));
            }
            if let Some(chart) = &section.chart {
                out.push_str(&chart.svg());
            }
            if let Some(table) = &section.table {
                out.push_str(&table.to_html());
            }
            out.push_str("</section>");
        }
        out.push_str("</body></html>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(title: &str) -> Report {
        Report {
            title: title.to_owned(),
            subtitle: "s".into(),
            highlights: vec![("readers".into(), "1,000".into())],
            sections: vec![Section {
                heading: "h".into(),
                note: Some("n".into()),
                chart: Some(Chart::Bar(BarChart {
                    title: "<script>x</script>".into(),
                    unit: "reads".into(),
                    bars: vec![
                        ("\"quoted\" 'title'".into(), 973.0),
                        ("nan".into(), f64::NAN),
                    ],
                })),
                table: Some(Table {
                    name: "t".into(),
                    headers: vec!["a".into()],
                    rows: vec![vec!["<b>".into()]],
                }),
            }],
        }
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let html = report("<script>alert(1)</script>").to_html();
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("&quot;quoted&quot; &#39;title&#39;"));
        assert!(html.contains("<td>&lt;b&gt;</td>"));
    }

    #[test]
    fn the_page_refers_to_nothing_outside() {
        let html = report("월간 리포트").to_html();
        for external in ["<script", "src=", "href=", "url(", "@import", "xmlns"] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<meta charset=\"utf-8\">"));
    }

    #[test]
    fn csv_is_rfc_4180_with_a_bom_and_no_formulas() {
        let table = Table {
            name: "t".into(),
            headers: vec!["title".into(), "reads".into()],
            rows: vec![
                vec!["하늘, 바다".into(), "-3.5".into()],
                vec!["say \"hi\"".into(), "=HYPERLINK(\"x\")".into()],
                vec!["@sum".into(), "+1+1".into()],
            ],
        };
        let csv = table.to_csv();
        assert!(csv.starts_with('\u{feff}'));
        assert_eq!(
            csv.trim_start_matches('\u{feff}'),
            "title,reads\r\n\"하늘, 바다\",-3.5\r\n\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\"\r\n'@sum,'+1+1\r\n"
        );
    }

    #[test]
    fn empty_charts_say_so() {
        let bar = Chart::Bar(BarChart {
            title: "b".into(),
            unit: "u".into(),
            bars: vec![],
        })
        .svg();
        let line = Chart::Line(LineChart {
            title: "l".into(),
            unit: "u".into(),
            x_labels: vec![],
            series: vec![],
        })
        .svg();
        for svg in [bar, line] {
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && svg.contains("no data"));
        }
    }

    #[test]
    fn odd_values_never_print_as_nan_or_infinity() {
        let svg = Chart::Line(LineChart {
            title: "l".into(),
            unit: "u".into(),
            x_labels: vec!["11-01".into()],
            series: vec![Series {
                name: "s".into(),
                values: vec![f64::INFINITY],
            }],
        })
        .svg();
        let bars = report("r").to_html();
        for text in [svg, bars] {
            assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        }
    }

    #[test]
    fn long_labels_are_cut_by_characters() {
        let long = "아주 긴 제목의 웹툰이 여기에 있습니다 그리고 더 깁니다";
        let cut = shorten(long);
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn axes_are_round_and_rendering_is_deterministic() {
        assert_eq!(ticks(973.0), vec![0.0, 250.0, 500.0, 750.0, 1000.0]);
        assert_eq!(ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(report("r").to_html(), report("r").to_html());
    }
}
