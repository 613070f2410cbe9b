//! Editor-facing reports (the monthly report, issue 19): one self-contained HTML page with its
//! charts drawn as inline SVG, and each table also as CSV. Nothing refers outside the page (no
//! scripts, fonts, stylesheets or images to fetch), so it opens the same from S3, a mail
//! attachment or a laptop offline. Rendering is deterministic: the same data gives the same
//! bytes, so a re-run of a month rewrites an identical object.

use std::fmt::Write as _;

/// Bar labels, x labels and series names longer than this (in characters, not bytes: a Korean
/// syllable is three bytes) are cut with "…"; the full text stays in the bar's tooltip.
const MAX_LABEL_CHARS: usize = 24;
/// Chart values are drawn no larger than this: a bigger axis would overflow into infinity and
/// print as "inf", and no count this report shows comes near it.
const MAX_PLOTTED: f64 = 1e15;
/// Every chart is drawn on a canvas this wide; the page scales it to the column.
const WIDTH: f64 = 720.0;
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

/// One line of a [`LineChart`]; `values[i]` belongs to `x_labels[i]`, extra values are ignored.
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

/// Escapes text for HTML and SVG, in content and in attributes (quoted with either quote).
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

/// A value as a chart draws it: finite, not below the baseline, not beyond [`MAX_PLOTTED`].
fn plotted(x: f64) -> f64 {
    finite(x).clamp(0.0, MAX_PLOTTED)
}

/// A value as a chart labels it: negative values keep their sign even though the bar is drawn
/// at 0, so the reader sees the data was odd rather than a silent zero.
fn labelled(x: f64) -> f64 {
    finite(x).clamp(-MAX_PLOTTED, MAX_PLOTTED)
}

fn shorten(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL_CHARS {
        return label.to_owned();
    }
    let mut cut: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A number as a label: thousands separated by commas, whole numbers without decimals, others
/// with up to 3 decimals. Three, not one, because rates such as precision@10 live in 0..1 and
/// would all read "0.1" otherwise.
pub fn number(x: f64) -> String {
    number_with(x, 3)
}

/// `x` rounded to `decimals` places, trailing zeros dropped, thousands separated by commas.
fn number_with(x: f64, decimals: usize) -> String {
    let x = finite(x);
    let text = format!("{:.*}", decimals, x.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((text.as_str(), ""));
    let fraction = fraction.trim_end_matches('0');
    let mut out = String::with_capacity(text.len() + text.len() / 3 + 1);
    // Rounding can leave only zeros (-0.0001 to 3 places): that is "0", not "-0".
    if x < 0.0 && text.bytes().any(|b| matches!(b, b'1'..=b'9')) {
        out.push('-');
    }
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if !fraction.is_empty() {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

/// A round axis for values up to `max`: 0 and three or four equal steps of 1, 2, 2.5 or 5 ×
/// 10^n, the last at or above `max`; and the step, which says how many decimals labels need.
fn axis(max: f64) -> (Vec<f64>, f64) {
    let max = plotted(max);
    // Below this, logarithms and powers of ten reach subnormals (a zero step would ask for
    // endless ticks); an empty axis of 0..1 tells the reader the same thing.
    if max < 1e-6 {
        return (vec![0.0, 0.5, 1.0], 0.5);
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    if !(step.is_finite() && step > 0.0) {
        return (vec![0.0, 0.5, 1.0], 0.5);
    }
    // The step is at least a quarter of `max`, so four steps always reach it; the clamp only
    // guards against rounding.
    let count = ((max / step).ceil() as usize).clamp(1, 4);
    ((0..=count).map(|i| step * i as f64).collect(), step)
}

/// Decimals that show `step` (and so every multiple of it) exactly: 2 for 0.25, 0 for 250.
fn decimals_for(step: f64) -> usize {
    (0u8..=9)
        .find(|d| {
            let scaled = step * 10f64.powi(i32::from(*d));
            (scaled - scaled.round()).abs() < 1e-6
        })
        .map_or(9, usize::from)
}

/// Roughly how wide `text` draws at `size` px, to leave room for labels: Hangul and CJK glyphs
/// take about a full em, Latin text about 0.6 em. Rough is enough; nothing is measured.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars()
        .map(|c| if is_wide(c) { 1.0 } else { 0.6 })
        .sum::<f64>()
        * size
}

fn is_wide(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{115F}'
        | '\u{2026}'
        | '\u{2E80}'..='\u{A4CF}'
        | '\u{AC00}'..='\u{D7A3}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FE30}'..='\u{FE4F}'
        | '\u{FF00}'..='\u{FF60}'
        | '\u{FFE0}'..='\u{FFE6}')
}

impl Chart {
    /// The chart as inline `<svg>` markup, sized by its viewBox to the column it sits in.
    pub fn svg(&self) -> String {
        match self {
            Self::Bar(chart) => chart.svg(),
            Self::Line(chart) => chart.svg(),
        }
    }
}

impl BarChart {
    fn svg(&self) -> String {
        const TOP: f64 = 34.0;
        const ROW: f64 = 22.0;
        // Room for the value printed after the longest bar.
        const RIGHT: f64 = 80.0;
        if self.bars.is_empty() {
            return empty_svg(&self.title);
        }
        let labels: Vec<String> = self.bars.iter().map(|(label, _)| shorten(label)).collect();
        let widest = labels
            .iter()
            .map(|l| text_width(l, 12.0))
            .fold(0.0, f64::max);
        // As much room as the longest label needs, but never so much that the bars have none.
        let left = (widest + 16.0).clamp(60.0, 320.0);
        let max = self.bars.iter().map(|b| plotted(b.1)).fold(0.0, f64::max);
        let (ticks, step) = axis(max);
        let top_value = ticks.last().copied().unwrap_or(1.0);
        let decimals = decimals_for(step);
        let plot = WIDTH - left - RIGHT;
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", escape(&self.unit))
        };
        let axis_y = TOP + ROW * self.bars.len() as f64 + 4.0;
        let caption = if self.unit.is_empty() { 0.0 } else { 16.0 };
        let height = axis_y + 22.0 + caption;
        let mut out = svg_open(&self.title, WIDTH, height);
        for (i, tick) in ticks.iter().enumerate() {
            let x = left + plot * tick / top_value;
            let stroke = if i == 0 { "#999" } else { "#e3e3e3" };
            let _ = write!(
                out,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{axis_y:.1}" stroke="{stroke}"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555">{}</text>"##,
                TOP - 2.0,
                axis_y + 14.0,
                escape(&number_with(*tick, decimals))
            );
        }
        for (i, ((label, value), short)) in self.bars.iter().zip(&labels).enumerate() {
            let y = TOP + ROW * i as f64;
            let w = plot * plotted(*value).min(top_value) / top_value;
            let shown = escape(&number(labelled(*value)));
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12" fill="#222">{}</text><rect x="{left:.1}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {shown}{unit}</title></rect><text x="{:.1}" y="{:.1}" font-size="11" fill="#333">{shown}</text>"##,
                left - 8.0,
                y + 15.0,
                escape(short),
                y + 3.0,
                ROW - 6.0,
                PALETTE[0],
                escape(label),
                left + w + 4.0,
                y + 15.0,
            );
        }
        if !self.unit.is_empty() {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#555">{}</text>"##,
                left + plot / 2.0,
                height - 6.0,
                escape(&self.unit)
            );
        }
        out.push_str("</svg>");
        out
    }
}

impl LineChart {
    fn svg(&self) -> String {
        const LEFT: f64 = 64.0;
        const RIGHT: f64 = 24.0;
        const TOP: f64 = 44.0;
        const PLOT_H: f64 = 220.0;
        let points = self.x_labels.len();
        if points == 0 || self.series.iter().all(|s| s.values.is_empty()) {
            return empty_svg(&self.title);
        }
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().take(points).copied().map(plotted))
            .fold(0.0, f64::max);
        let (ticks, step) = axis(max);
        let top_value = ticks.last().copied().unwrap_or(1.0);
        let decimals = decimals_for(step);
        let plot_w = WIDTH - LEFT - RIGHT;
        let x_at = |i: usize| {
            if points == 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * i as f64 / (points - 1) as f64
            }
        };
        let y_at = |v: f64| TOP + PLOT_H - PLOT_H * plotted(v).min(top_value) / top_value;

        // The legend wraps onto more rows rather than running off the canvas, so the height
        // depends on it and is worked out before anything is drawn.
        let mut legend = Vec::with_capacity(self.series.len());
        let (mut cursor, mut row) = (LEFT, 0usize);
        for series in &self.series {
            let name = shorten(&series.name);
            let item = 34.0 + text_width(&name, 11.0);
            if cursor > LEFT && cursor + item > WIDTH - RIGHT {
                cursor = LEFT;
                row += 1;
            }
            legend.push((cursor, row, name));
            cursor += item;
        }
        let legend_top = TOP + PLOT_H + 36.0;
        let height = legend_top + 18.0 * (row + 1) as f64;

        let mut out = svg_open(&self.title, WIDTH, height);
        if !self.unit.is_empty() {
            let _ = write!(
                out,
                r##"<text x="8" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
                TOP - 12.0,
                escape(&self.unit)
            );
        }
        for (i, tick) in ticks.iter().enumerate() {
            let y = y_at(*tick);
            let stroke = if i == 0 { "#999" } else { "#e3e3e3" };
            let _ = write!(
                out,
                r##"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11" fill="#555">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(&number_with(*tick, decimals))
            );
        }
        let shown = x_label_indices(points);
        for (i, label) in self.x_labels.iter().enumerate() {
            if shown.contains(&i) {
                let _ = write!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#555">{}</text>"##,
                    x_at(i),
                    TOP + PLOT_H + 16.0,
                    escape(&shorten(label))
                );
            }
        }
        for (n, series) in self.series.iter().enumerate() {
            let colour = PALETTE[n % PALETTE.len()];
            let values: Vec<f64> = series.values.iter().take(points).copied().collect();
            if values.len() > 1 {
                let path: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{:.1},{:.1}", x_at(i), y_at(*v)))
                    .collect();
                let _ = write!(
                    out,
                    r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
                    path.join(" ")
                );
            }
            // A dot per point, so a single day still shows and each day's value is a tooltip.
            for (i, (v, label)) in values.iter().zip(&self.x_labels).enumerate() {
                let _ = write!(
                    out,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{colour}"><title>{}, {}: {}</title></circle>"##,
                    x_at(i),
                    y_at(*v),
                    escape(&series.name),
                    escape(label),
                    escape(&number(labelled(*v)))
                );
            }
            // The latest value is the one an editor asks about; it is printed, not hovered.
            if let Some((last, v)) = values.iter().enumerate().next_back() {
                let anchor = if points == 1 {
                    "middle"
                } else if last * 2 >= points - 1 {
                    "end"
                } else {
                    "start"
                };
                let _ = write!(
                    out,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" font-size="11" fill="{colour}">{}</text>"##,
                    x_at(last),
                    y_at(*v) - 6.0,
                    escape(&number(labelled(*v)))
                );
            }
        }
        for (n, (x, row, name)) in legend.iter().enumerate() {
            let colour = PALETTE[n % PALETTE.len()];
            let y = legend_top + 18.0 * *row as f64;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{colour}"/><text x="{:.1}" y="{y:.1}" font-size="11" fill="#222">{}</text>"##,
                y - 9.0,
                x + 14.0,
                escape(name)
            );
        }
        out.push_str("</svg>");
        out
    }
}

/// Which of `points` x labels a line chart prints: at most about 16, evenly spaced, so a
/// month's days stay legible; always the last, and no regular one closer to it than the
/// spacing (they would overlap).
fn x_label_indices(points: usize) -> Vec<usize> {
    let every = points.div_ceil(16).max(1);
    let mut shown: Vec<usize> = (0..points)
        .step_by(every)
        .filter(|&i| i + 1 == points || points - 1 - i >= every)
        .collect();
    if points > 0 && shown.last() != Some(&(points - 1)) {
        shown.push(points - 1);
    }
    shown
}

/// The opening of every chart: a viewBox so it scales, and a title read out by screen readers.
fn svg_open(title: &str, width: f64, height: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {width:.0} {height:.0}" width="100%" role="img" aria-label="{t}"><title>{t}</title><text x="8" y="20" font-size="14" font-weight="600" fill="#111">{t}</text>"##,
        t = escape(title)
    );
    out
}

/// A chart with nothing to draw still takes its place on the page and says so, rather than
/// leaving an empty frame an editor could take for a rendering fault.
fn empty_svg(title: &str) -> String {
    let (width, height) = (WIDTH, 120.0);
    let mut out = svg_open(title, width, height);
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13" fill="#777">no data</text></svg>"##,
        width / 2.0,
        height / 2.0 + 10.0
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
    /// Excel, which editors open CSV with, reads a file without one in the local code page and
    /// shows Korean text as mojibake. A cell that a spreadsheet would run as a formula (=, +, -,
    /// @, tab or CR first) is prefixed with a quote, unless it is a plain number.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("\u{feff}");
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&csv_cell(cell));
            }
            out.push_str("\r\n");
        }
        out
    }

    /// The table as HTML: headers as words (`active_readers` reads "Active readers"; the CSV
    /// keeps the column names), and numeric columns right-aligned, every cell of them, so
    /// their digits line up and a word among them ("new") sits where the numbers do.
    pub fn to_html(&self) -> String {
        let mut out = String::from("<table><thead><tr>");
        let numeric = self.numeric_columns();
        for (header, numeric) in self.headers.iter().zip(&numeric) {
            let class = if *numeric { " class=\"num\"" } else { "" };
            let _ = write!(out, "<th{class}>{}</th>", escape(&heading(header)));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                if numeric.get(i).copied().unwrap_or(false) {
                    let _ = write!(out, "<td class=\"num\">{}</td>", escape(cell));
                } else {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
            }
            // Short rows are padded so the grid lines still run the table's full width.
            for _ in row.len()..self.headers.len() {
                out.push_str("<td></td>");
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
        out
    }
}

impl Table {
    /// Per column: whether most of its non-empty cells are numbers.
    fn numeric_columns(&self) -> Vec<bool> {
        (0..self.headers.len())
            .map(|i| {
                let cells: Vec<&String> = self
                    .rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .filter(|cell| !cell.is_empty())
                    .collect();
                let numbers = cells.iter().filter(|cell| is_numeric(cell)).count();
                numbers > 0 && numbers * 2 >= cells.len()
            })
            .collect()
    }
}

/// A column name as a heading: `active_readers` → "Active readers".
fn heading(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A finite number, possibly with thousands commas or a trailing "%" ("1,234", "-3.5", "12.0%").
fn is_numeric(cell: &str) -> bool {
    let bare = cell.strip_suffix('%').unwrap_or(cell).replace(',', "");
    !bare.is_empty() && bare.parse::<f64>().is_ok_and(f64::is_finite)
}

fn csv_cell(cell: &str) -> String {
    // "inf" and "NaN" parse as f64 too, but a spreadsheet would evaluate "-inf" as a formula, so
    // only finite numbers escape the guard.
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && !cell.parse::<f64>().is_ok_and(f64::is_finite);
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

/// A part of the report: a heading, an optional note, then its chart, then its table.
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

/// The page's only styling. System fonts only: a web font would be a fetch, and the ones
/// listed cover Korean on macOS, Windows and most Linux desktops.
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Apple SD Gothic Neo','Malgun Gothic','Noto Sans KR',sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#111;line-height:1.45}\
h1{font-size:1.6rem;margin-bottom:.2rem}.sub{color:#555;margin-top:0}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}\
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1.5rem 0}.card{border:1px solid #ddd;border-radius:8px;padding:.75rem 1rem;min-width:140px}\
.card b{display:block;font-size:1.3rem}.card span{color:#555;font-size:.85rem}\
section{margin:2rem 0}svg{display:block;max-width:100%;height:auto;margin:.5rem 0}\
table{border-collapse:collapse;width:100%;font-size:.85rem;margin-top:.75rem}\
th,td{border-bottom:1px solid #e5e5e5;padding:.3rem .5rem;text-align:left}th{background:#f6f6f6}.num{text-align:right;font-variant-numeric:tabular-nums}\
.note{color:#555;font-size:.9rem}\
@media print{body{margin:0;max-width:none}.card,svg,tr{break-inside:avoid}h2{break-after:avoid}th{background:none}}";

impl Report {
    /// The whole page: one HTML document with everything inline.
    pub fn to_html(&self) -> String {
        let mut out =
            String::from("<!DOCTYPE html>\n<html lang=\"ko\"><head><meta charset=\"utf-8\">");
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
        let _ = write!(
            out,
            "<title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1><p class=\"sub\">{}</p>",
            escape(&self.title),
            escape(&self.title),
            escape(&self.subtitle)
        );
        if !self.highlights.is_empty() {
            out.push_str("<div class=\"cards\">");
            for (label, value) in &self.highlights {
                let _ = write!(
                    out,
                    "<div class=\"card\"><b>{}</b><span>{}</span></div>",
                    escape(value),
                    escape(label)
                );
            }
            out.push_str("</div>");
        }
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

    const LONG_KOREAN: &str = "아주 긴 제목의 웹툰이 여기에 있습니다 그리고 더 깁니다";

    fn report(title: &str) -> Report {
        Report {
            title: title.to_owned(),
            subtitle: "s".into(),
            highlights: vec![("readers".into(), "1,000".into())],
            sections: vec![
                Section {
                    heading: "h".into(),
                    note: Some("n".into()),
                    chart: Some(Chart::Bar(BarChart {
                        title: "<script>x</script>".into(),
                        unit: "reads".into(),
                        bars: vec![
                            ("\"quoted\" 'title'".into(), 973.0),
                            ("not a number".into(), f64::NAN),
                            ("bottomless".into(), f64::NEG_INFINITY),
                            ("negative".into(), -12.0),
                            (LONG_KOREAN.into(), 1234.5),
                        ],
                    })),
                    table: Some(Table {
                        name: "t".into(),
                        headers: vec!["a\"b".into(), "<i>".into()],
                        rows: vec![vec!["<b>".into(), "it's \"x\"".into()]],
                    }),
                },
                Section {
                    heading: "days".into(),
                    note: None,
                    chart: Some(Chart::Line(line(vec![
                        series("<script>s</script>", vec![1.0, f64::NAN, 3.0]),
                        series("b", vec![f64::INFINITY, 2.0, 0.5]),
                    ]))),
                    table: None,
                },
            ],
        }
    }

    fn line(series: Vec<Series>) -> LineChart {
        LineChart {
            title: "l".into(),
            unit: "readers".into(),
            x_labels: vec!["11-01".into(), "11-02".into(), "11-03".into()],
            series,
        }
    }

    fn series(name: &str, values: Vec<f64>) -> Series {
        Series {
            name: name.into(),
            values,
        }
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let html = report("<script>alert(1)</script> \"it's\"").to_html();
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains(
                "<title>&lt;script&gt;alert(1)&lt;/script&gt; &quot;it&#39;s&quot;</title>"
            )
        );
        assert!(html.contains("aria-label=\"&lt;script&gt;x&lt;/script&gt;\""));
        assert!(html.contains("&quot;quoted&quot; &#39;title&#39;"));
        assert!(html.contains("&lt;script&gt;s&lt;/script&gt;"));
        assert!(html.contains("<th>A&quot;b</th><th>&lt;i&gt;</th>"));
        assert!(html.contains("<td>&lt;b&gt;</td><td>it&#39;s &quot;x&quot;</td>"));
        assert_eq!(escape("&<>\"'"), "&amp;&lt;&gt;&quot;&#39;");
    }

    #[test]
    fn the_page_refers_to_nothing_outside() {
        let html = report("월간 리포트").to_html();
        for external in [
            "<script",
            "src=",
            "href=",
            "url(",
            "@import",
            "xmlns",
            "http",
            "@font-face",
        ] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"ko\">"));
        assert!(html.contains("<meta charset=\"utf-8\">"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("<title>월간 리포트</title>"));
    }

    #[test]
    fn sections_show_their_chart_before_their_table() {
        let html = report("r").to_html();
        let svg = html.find("<svg").expect("a chart");
        let table = html.find("<table>").expect("a table");
        assert!(svg < table);
        assert_eq!(html.matches("<section>").count(), 2);
        assert!(html.contains("<div class=\"card\"><b>1,000</b><span>readers</span></div>"));
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
                vec!["\tx".into(), "line\r\nbreak".into()],
                vec!["-inf".into(), "+2".into()],
                vec!["\rcmd".into(), "-".into()],
            ],
        };
        let csv = table.to_csv();
        assert!(csv.starts_with('\u{feff}'));
        assert_eq!(
            csv.trim_start_matches('\u{feff}'),
            "title,reads\r\n\
             \"하늘, 바다\",-3.5\r\n\
             \"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\"\r\n\
             '@sum,'+1+1\r\n\
             '\tx,\"line\r\nbreak\"\r\n\
             '-inf,+2\r\n\
             \"'\rcmd\",'-\r\n"
        );
        assert_eq!(csv_cell("-3.5"), "-3.5");
        assert_eq!(csv_cell("-1e3"), "-1e3");
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
        let no_values = Chart::Line(line_with_labels_only()).svg();
        for svg in [bar, line, no_values] {
            assert!(svg.starts_with("<svg viewBox=\"0 0 720 120\""), "{svg}");
            assert!(svg.ends_with("</svg>") && svg.contains(">no data</text>"));
            assert!(svg.contains("role=\"img\"") && svg.contains("<title>"));
            assert_eq!(svg.matches("<svg").count(), svg.matches("</svg>").count());
        }
    }

    fn line_with_labels_only() -> LineChart {
        line(vec![series("s", vec![])])
    }

    #[test]
    fn odd_values_never_print_as_nan_or_infinity() {
        let charts = [
            Chart::Line(line(vec![series("s", vec![f64::INFINITY])])),
            Chart::Line(line(vec![series("s", vec![f64::NAN, f64::MAX, -1.0])])),
            Chart::Bar(BarChart {
                title: "b".into(),
                unit: "u".into(),
                bars: vec![
                    ("max".into(), f64::MAX),
                    ("tiny".into(), f64::MIN_POSITIVE),
                    ("neg".into(), f64::NEG_INFINITY),
                ],
            }),
            Chart::Bar(BarChart {
                title: "b".into(),
                unit: "u".into(),
                bars: vec![("subnormal".into(), 5e-324), ("undefined".into(), f64::NAN)],
            }),
        ];
        let texts = charts.iter().map(Chart::svg).chain([report("r").to_html()]);
        for text in texts {
            let lower = text.to_lowercase();
            assert!(!lower.contains("nan") && !lower.contains("inf"), "{text}");
            assert!(!text.contains("width=\"-"), "{text}");
        }
    }

    #[test]
    fn negative_bars_are_drawn_at_zero_but_labelled_as_they_are() {
        let svg = Chart::Bar(BarChart {
            title: "b".into(),
            unit: "".into(),
            bars: vec![("a".into(), -12.0), ("b".into(), 8.0)],
        })
        .svg();
        assert!(svg.contains("width=\"0.0\""), "{svg}");
        assert!(svg.contains(">-12</text>"), "{svg}");
    }

    #[test]
    fn a_single_point_line_chart_draws_a_dot() {
        let chart = LineChart {
            title: "one day".into(),
            unit: "readers".into(),
            x_labels: vec!["11-01".into()],
            series: vec![series("s", vec![42.0, 99.0])],
        };
        let svg = Chart::Line(chart).svg();
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
        assert!(!svg.contains("<polyline"));
        assert!(svg.contains(">42</text>"), "{svg}");
        assert!(!svg.contains(">99<") && !svg.contains(": 99"), "{svg}");
    }

    #[test]
    fn long_labels_are_cut_by_characters() {
        assert!(LONG_KOREAN.chars().count() > MAX_LABEL_CHARS);
        let cut = shorten(LONG_KOREAN);
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        assert!(cut.ends_with('…'));
        assert!(LONG_KOREAN.starts_with(cut.trim_end_matches('…')));
        assert_eq!(shorten("짧은 제목"), "짧은 제목");

        let svg = Chart::Bar(BarChart {
            title: "b".into(),
            unit: "reads".into(),
            bars: vec![(LONG_KOREAN.into(), 3.0)],
        })
        .svg();
        // The bar's label is cut; its tooltip keeps the whole title.
        assert!(svg.contains(&format!(">{cut}</text>")), "{svg}");
        assert!(svg.contains(&format!("<title>{LONG_KOREAN}: 3 reads</title>")));
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(report("r").to_html(), report("r").to_html());
        let chart = Chart::Line(line(vec![series("a", vec![0.1, 0.2, 0.3])]));
        assert_eq!(chart.svg(), chart.svg());
        let table = report("r").sections[0].table.clone().expect("a table");
        assert_eq!(table.to_csv(), table.to_csv());
    }

    #[test]
    fn axes_are_round() {
        assert_eq!(axis(973.0).0, vec![0.0, 250.0, 500.0, 750.0, 1000.0]);
        assert_eq!(axis(0.0).0, vec![0.0, 0.5, 1.0]);
        assert_eq!(axis(f64::NAN).0, vec![0.0, 0.5, 1.0]);
        assert_eq!(axis(-5.0).0, vec![0.0, 0.5, 1.0]);
        assert_eq!(axis(10.0).0, vec![0.0, 2.5, 5.0, 7.5, 10.0]);
        assert_eq!(axis(1.0).0, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        for max in [
            1e-6, 0.003, 0.37, 1.0, 3.0, 7.0, 26.0, 51.0, 101.0, 973.0, 12_345.0, 9.9e14, 1e300,
        ] {
            let (ticks, step) = axis(max);
            assert!((3..=5).contains(&ticks.len()), "{max}: {ticks:?}");
            assert!(
                ticks.last().copied().unwrap_or(0.0) >= max.min(MAX_PLOTTED),
                "{max}"
            );
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 2.5, 5.0]
                    .iter()
                    .any(|m| (m - mantissa).abs() < 1e-9),
                "{max}: {step}"
            );
        }
        let (ticks, step) = axis(0.37);
        let labels: Vec<String> = ticks
            .iter()
            .map(|t| number_with(*t, decimals_for(step)))
            .collect();
        assert_eq!(labels, ["0", "0.1", "0.2", "0.3", "0.4"]);
        let (ticks, step) = axis(0.009);
        let labels: Vec<String> = ticks
            .iter()
            .map(|t| number_with(*t, decimals_for(step)))
            .collect();
        assert_eq!(labels, ["0", "0.0025", "0.005", "0.0075", "0.01"]);
        let svg = Chart::Bar(BarChart {
            title: "b".into(),
            unit: "reads".into(),
            bars: vec![("a".into(), 973.0)],
        })
        .svg();
        for label in [
            ">0<", ">250<", ">500<", ">750<", ">1,000<", ">973<", ">reads<",
        ] {
            assert!(svg.contains(label), "{label}: {svg}");
        }
    }

    #[test]
    fn numbers_read_the_same_everywhere() {
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(999.0), "999");
        assert_eq!(number(1000.0), "1,000");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(1234.5), "1,234.5");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(number(0.1 + 0.2), "0.3");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(f64::NAN), "0");
        assert_eq!(number(f64::NEG_INFINITY), "0");
    }

    #[test]
    fn a_crowded_legend_wraps_instead_of_running_off() {
        let many: Vec<Series> = (0..8)
            .map(|i| series(&format!("{LONG_KOREAN} {i}"), vec![1.0, 2.0, 3.0]))
            .collect();
        let svg = Chart::Line(line(many)).svg();
        let one = Chart::Line(line(vec![series("a", vec![1.0, 2.0, 3.0])])).svg();
        assert_eq!(svg.matches("<polyline").count(), 8);
        let height = |s: &str| -> f64 {
            s.split('"')
                .nth(1)
                .and_then(|v| v.rsplit(' ').next())
                .and_then(|h| h.parse().ok())
                .expect("a viewBox")
        };
        assert!(height(&svg) > height(&one), "{svg}");
        for x in svg.split("<rect x=\"").skip(1) {
            let x: f64 = x
                .split('"')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a number");
            assert!(x < WIDTH, "{x}");
        }
    }

    #[test]
    fn tables_pad_short_rows_and_align_numbers() {
        let table = Table {
            name: "t".into(),
            headers: vec!["day".into(), "active_readers".into(), "change".into()],
            rows: vec![
                vec!["11-01".into(), "1,234".into(), "12.5%".into()],
                vec!["11-02".into(), "980".into(), "new".into()],
                vec!["11-03".into()],
            ],
        };
        // Words for headings; a numeric column's every cell (and heading) right-aligned, "new"
        // included; short rows padded.
        assert_eq!(
            table.to_html(),
            "<table><thead><tr><th>Day</th><th class=\"num\">Active readers</th><th class=\"num\">Change</th></tr></thead><tbody>\
             <tr><td>11-01</td><td class=\"num\">1,234</td><td class=\"num\">12.5%</td></tr>\
             <tr><td>11-02</td><td class=\"num\">980</td><td class=\"num\">new</td></tr>\
             <tr><td>11-03</td><td></td><td></td></tr></tbody></table>"
        );
        // The CSV keeps the column names.
        assert!(
            table
                .to_csv()
                .starts_with("\u{feff}day,active_readers,change\r\n")
        );
    }

    /// A month of days: the last label shown, none within the spacing before it (they would
    /// overlap: 28 and 29 both shown was the report's blemish).
    #[test]
    fn x_labels_are_spaced_and_end_with_the_last() {
        assert_eq!(x_label_indices(0), Vec::<usize>::new());
        assert_eq!(x_label_indices(1), vec![0]);
        assert_eq!(x_label_indices(7), (0..7).collect::<Vec<_>>());
        assert_eq!(
            x_label_indices(30),
            vec![0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 29]
        );
        assert_eq!(
            x_label_indices(31),
            vec![0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]
        );
        for points in 1..200 {
            let shown = x_label_indices(points);
            assert_eq!(shown.last(), Some(&(points - 1)));
            let every = points.div_ceil(16);
            assert!(
                shown.windows(2).all(|w| w[1] - w[0] >= every),
                "{points}: {shown:?}"
            );
        }
    }
}
