//! The weekly analysis's rules (SPEC §3, issue 19): which week a date belongs to, and which
//! titles rose or fell week over week. A title's week counts its episode reads.

use chrono::{Datelike as _, NaiveDate};
use serde::Serialize;

use crate::calendar::{add_days, sub_days};

/// Titles listed as rising, and as falling.
pub const LISTED_TRENDS: usize = 10;
/// A title moves only when it gained (or lost) at least this many reads...
pub const MIN_READS_DELTA: i64 = 10;
/// ...and at least half again as many (rising), or a third fewer (falling).
pub const RISING_RATIO: f64 = 0.5;
pub const FALLING_RATIO: f64 = -0.3;

/// The Monday that starts the week of `day` (ISO weeks, Monday to Sunday).
pub fn week_start(day: NaiveDate) -> NaiveDate {
    sub_days(day, u64::from(day.weekday().num_days_from_monday()))
}

/// The week of `day`: its Monday, and the Monday after it.
pub fn week_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let start = week_start(day);
    (start, add_days(start, 7))
}

/// One title's reads this week and the week before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TitleWeek {
    pub webtoon_id: i64,
    pub title: String,
    pub reads: i64,
    pub previous_reads: i64,
    /// Relative change; absent for a title with no reads the week before.
    pub change: Option<f64>,
}

impl TitleWeek {
    pub fn new(webtoon_id: i64, title: String, reads: i64, previous_reads: i64) -> Self {
        let change = (previous_reads > 0)
            .then(|| (reads - previous_reads) as f64 / previous_reads as f64)
            .map(round3);
        Self {
            webtoon_id,
            title,
            reads,
            previous_reads,
            change,
        }
    }

    fn delta(&self) -> i64 {
        self.reads - self.previous_reads
    }

    pub fn is_rising(&self) -> bool {
        self.delta() >= MIN_READS_DELTA && self.change.is_none_or(|c| c >= RISING_RATIO)
    }

    pub fn is_falling(&self) -> bool {
        -self.delta() >= MIN_READS_DELTA && self.change.is_some_and(|c| c <= FALLING_RATIO)
    }
}

/// The titles that rose most and fell most, by reads gained or lost (ties by id).
pub fn trends(titles: &[TitleWeek]) -> (Vec<TitleWeek>, Vec<TitleWeek>) {
    let mut rising: Vec<TitleWeek> = titles.iter().filter(|t| t.is_rising()).cloned().collect();
    rising.sort_by(|a, b| {
        b.delta()
            .cmp(&a.delta())
            .then(a.webtoon_id.cmp(&b.webtoon_id))
    });
    rising.truncate(LISTED_TRENDS);
    let mut falling: Vec<TitleWeek> = titles.iter().filter(|t| t.is_falling()).cloned().collect();
    falling.sort_by(|a, b| {
        a.delta()
            .cmp(&b.delta())
            .then(a.webtoon_id.cmp(&b.webtoon_id))
    });
    falling.truncate(LISTED_TRENDS);
    (rising, falling)
}

/// One genre's week: its reads, readers, share of all reads and change on the week before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenreWeek {
    pub genre: String,
    pub reads: i64,
    pub readers: i64,
    pub share: f64,
    pub change: Option<f64>,
}

/// Genres by reads (ties by name), with their shares of the week's reads. A title in two genres
/// counts in both, so shares are of genre reads, not of title reads.
pub fn genre_popularity(rows: Vec<(String, i64, i64, i64)>) -> Vec<GenreWeek> {
    let total: i64 = rows.iter().map(|r| r.1).sum();
    let mut genres: Vec<GenreWeek> = rows
        .into_iter()
        .filter(|r| r.1 > 0)
        .map(|(genre, reads, readers, previous)| GenreWeek {
            genre,
            reads,
            readers,
            share: if total > 0 {
                round3(reads as f64 / total as f64)
            } else {
                0.0
            },
            change: (previous > 0).then(|| round3((reads - previous) as f64 / previous as f64)),
        })
        .collect();
    genres.sort_by(|a, b| b.reads.cmp(&a.reads).then(a.genre.cmp(&b.genre)));
    genres
}

/// Reads per active reader, 0 with no readers.
pub fn reads_per_reader(reads: i64, readers: i64) -> f64 {
    if readers > 0 {
        round3(reads as f64 / readers as f64)
    } else {
        0.0
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    #[test]
    fn weeks_run_monday_to_sunday() {
        assert_eq!(
            week_of(day("2026-11-22")),
            (day("2026-11-16"), day("2026-11-23"))
        );
        assert_eq!(week_start(day("2026-11-16")), day("2026-11-16"));
        assert_eq!(week_start(day("2026-11-18")), day("2026-11-16"));
    }

    #[test]
    fn rising_and_falling_need_both_a_ratio_and_a_count() {
        let t = |id, reads, previous| TitleWeek::new(id, format!("t{id}"), reads, previous);
        let titles = vec![
            t(1, 30, 10),   // +20, +200 %: rising
            t(2, 14, 10),   // +4: too few reads
            t(3, 120, 100), // +20 but +20 %: steady
            t(4, 25, 0),    // new this week: rising
            t(5, 5, 40),    // -35, -87 %: falling
            t(6, 80, 100),  // -20, -20 %: steady
        ];
        let (rising, falling) = trends(&titles);
        assert_eq!(
            rising.iter().map(|t| t.webtoon_id).collect::<Vec<_>>(),
            vec![4, 1]
        );
        assert_eq!(
            falling.iter().map(|t| t.webtoon_id).collect::<Vec<_>>(),
            vec![5]
        );
        assert_eq!(rising[1].change, Some(2.0));
        assert_eq!(rising[0].change, None);
    }

    /// docs/functions/weekly-analysis.md: at least 10 reads and +50 % / −30 %, the ten that
    /// moved most. Planted on each side of every boundary.
    #[test]
    fn trend_boundaries_are_the_documented_ones() {
        let t = |id, reads, previous| TitleWeek::new(id, format!("t{id}"), reads, previous);
        let titles = vec![
            t(1, 30, 20),  // +10, +50 %: rising (both at the boundary)
            t(2, 29, 20),  // +9, +45 %: neither
            t(3, 31, 21),  // +10, +47.6 %: the ratio falls short
            t(4, 9, 0),    // new, 9 reads: too few
            t(5, 10, 0),   // new, 10 reads: rising
            t(6, 21, 30),  // -9, -30 %: too few
            t(7, 20, 30),  // -10, -33 %: falling
            t(8, 70, 100), // -30, -30 %: falling (at the ratio)
            t(9, 71, 100), // -29, -29 %: the ratio falls short
        ];
        let (rising, falling) = trends(&titles);
        let ids = |ts: &[TitleWeek]| ts.iter().map(|t| t.webtoon_id).collect::<Vec<_>>();
        assert_eq!(ids(&rising), vec![1, 5]);
        assert_eq!(ids(&falling), vec![8, 7]);
        // Only the ten that moved most are listed.
        let many: Vec<TitleWeek> = (1..=15).map(|i| t(i, 100 + i * 10, 10)).collect();
        let (rising, _) = trends(&many);
        assert_eq!(ids(&rising), (6..=15).rev().collect::<Vec<_>>());
    }

    #[test]
    fn genres_come_with_their_share_and_change() {
        let genres = genre_popularity(vec![
            ("ACTION".into(), 30, 10, 20),
            ("ROMANCE".into(), 70, 20, 0),
            ("HORROR".into(), 0, 0, 5),
        ]);
        assert_eq!(genres.len(), 2);
        assert_eq!(genres[0].genre, "ROMANCE");
        assert_eq!(genres[0].share, 0.7);
        assert_eq!(genres[0].change, None);
        assert_eq!(genres[1].change, Some(0.5));
        assert_eq!(reads_per_reader(7, 2), 3.5);
        assert_eq!(reads_per_reader(7, 0), 0.0);
    }
}
