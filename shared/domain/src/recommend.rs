//! Recommendations (SPEC §3, issue 19): for every active reader, the 20 webtoons they have not
//! opened that they are most likely to read next, from three signals blended per A/B variant:
//!
//! - **similar**: item–item collaborative filtering. Two titles are similar when the same
//!   readers read both (cosine over co-readers); each title keeps its 30 nearest neighbours, and
//!   a candidate scores the similarity-weighted engagement of the titles the reader read.
//! - **content**: the genres and authors of what the reader read, weighted by engagement and
//!   recency, matched against each candidate's.
//! - **popular**: recency-weighted engagement over all readers; the fallback for readers with
//!   little history, and the filler when the other signals run out.
//!
//! Each signal is scaled to 0..1 per reader before blending, so a variant's weights mean what
//! they say. Everything is deterministic (ties go to the lower title id; work is split by reader
//! and reassembled in order), so a re-run over the same events gives the same lists.
//!
//! Engagement is recency-weighted: an event `age` days before the target day counts
//! `kind weight × 0.5^(age / 14)`; the database sums it per reader and title
//! ([`KIND_WEIGHTS`], [`HALF_LIFE_DAYS`]).

use std::collections::HashMap;

use serde::Serialize;

/// Recommendations per reader.
pub const TOP_N: usize = 20;
/// The cut-off of the offline evaluation (precision@10, recall@10).
pub const EVAL_K: usize = 10;
/// Days of activity read: co-reading, profiles and what a reader has already opened.
pub const HISTORY_DAYS: i64 = 120;
/// A reader is active with any event in the last 30 days (the target day included).
pub const ACTIVE_DAYS: i64 = 30;
/// Engagement halves every 14 days.
pub const HALF_LIFE_DAYS: f64 = 14.0;
/// `view`, `episode_read`, `like`, `subscribe`: a subscription says more than a glance.
pub const KIND_WEIGHTS: [(&str, f64); 4] = [
    ("view", 1.0),
    ("episode_read", 2.0),
    ("like", 4.0),
    ("subscribe", 6.0),
];
/// Readers with fewer titles than this get the popularity fallback.
pub const MIN_HISTORY: usize = 3;
/// Neighbours kept per title.
pub const NEIGHBOURS: usize = 30;
/// Two titles are neighbours only when at least this many readers read both.
pub const MIN_CO_READERS: u32 = 2;
/// A reader's heaviest titles counted in co-reading: a few readers with thousands of titles
/// would otherwise cost more than everyone else together, and say little about similarity.
pub const MAX_CO_HISTORY: usize = 200;
/// Candidates taken from each of a reader's top genres, and from the overall chart.
const GENRE_CANDIDATES: usize = 100;
const TOP_GENRES: usize = 3;
const TOP_AUTHORS: usize = 5;
/// How much an author match counts against a full genre match.
const AUTHOR_WEIGHT: f32 = 0.5;
/// Readers evaluated per run at most (the lowest stable hashes: the same readers each run).
pub const MAX_EVAL_READERS: usize = 20_000;

/// One A/B variant: how it blends the signals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub similar: f32,
    pub content: f32,
    pub popular: f32,
}

/// The experiment's arms: readers are split evenly by [`variant_of`].
pub const VARIANTS: [Variant; 2] = [
    Variant {
        name: "A-similar",
        similar: 0.6,
        content: 0.3,
        popular: 0.1,
    },
    Variant {
        name: "B-content",
        similar: 0.3,
        content: 0.6,
        popular: 0.1,
    },
];

/// What readers with little history get, whatever their arm.
pub const COLD_START: Variant = Variant {
    name: "cold-start",
    similar: 0.2,
    content: 0.2,
    popular: 0.6,
};

/// The baseline every variant is evaluated against; never served.
pub const POPULARITY_ONLY: Variant = Variant {
    name: "popularity",
    similar: 0.0,
    content: 0.0,
    popular: 1.0,
};

/// The experiment's name salts the hash, so a new experiment reshuffles readers.
pub const EXPERIMENT: &str = "recs-blend-2026-11";

/// A stable hash of a reader for this experiment: the same on every run, machine and release
/// (std's hashers promise none of that).
pub fn reader_hash(user_id: i64) -> u64 {
    let salt = EXPERIMENT.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    splitmix64(salt ^ user_id as u64)
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The reader's arm: an even split by [`reader_hash`].
pub fn variant_of(user_id: i64) -> &'static Variant {
    &VARIANTS[(reader_hash(user_id) % VARIANTS.len() as u64) as usize]
}

/// The titles that can be recommended, with their genres and authors, indexed densely.
#[derive(Debug, Default)]
pub struct Catalog {
    pub ids: Vec<i64>,
    pub genres: Vec<Vec<u32>>,
    pub authors: Vec<Vec<u32>>,
    pub genre_names: Vec<String>,
    pub author_names: Vec<String>,
    index: HashMap<i64, u32>,
    genre_index: HashMap<String, u32>,
    author_index: HashMap<String, u32>,
}

impl Catalog {
    /// Adds a title (once per id; a repeated id adds its genres and authors).
    pub fn add(&mut self, id: i64, genres: &[String], authors: &[String]) {
        let title = *self.index.entry(id).or_insert_with(|| {
            self.ids.push(id);
            self.genres.push(Vec::new());
            self.authors.push(Vec::new());
            (self.ids.len() - 1) as u32
        });
        for genre in genres {
            let g = intern(&mut self.genre_index, &mut self.genre_names, genre);
            push_unique(&mut self.genres[title as usize], g);
        }
        for author in authors {
            let a = intern(&mut self.author_index, &mut self.author_names, author);
            push_unique(&mut self.authors[title as usize], a);
        }
    }

    pub fn title(&self, id: i64) -> Option<u32> {
        self.index.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn intern(index: &mut HashMap<String, u32>, names: &mut Vec<String>, name: &str) -> u32 {
    if let Some(&id) = index.get(name) {
        return id;
    }
    names.push(name.to_owned());
    let id = (names.len() - 1) as u32;
    index.insert(name.to_owned(), id);
    id
}

fn push_unique(list: &mut Vec<u32>, value: u32) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// What readers did with titles: per reader, the titles they opened with their engagement.
/// Build it with [`History::from_pairs`].
#[derive(Debug, Default)]
pub struct History {
    /// Reader ids in ascending order; reader `r`'s titles are `offsets[r]..offsets[r + 1]`.
    pub readers: Vec<i64>,
    offsets: Vec<usize>,
    titles: Vec<u32>,
    weights: Vec<f32>,
    /// (reader, title) opened before the engagement window, sorted: never recommended, but
    /// no signal (see [`History::with_earlier`]).
    earlier: Vec<(i64, u32)>,
}

impl History {
    /// From `(reader, title, engagement)` in any order; pairs with no engagement are dropped,
    /// and a repeated pair adds up.
    pub fn from_pairs(mut pairs: Vec<(i64, u32, f32)>) -> Self {
        pairs.retain(|p| p.2 > 0.0 && p.2.is_finite());
        pairs.sort_unstable_by_key(|p| (p.0, p.1));
        let mut history = Self::default();
        for (reader, title, weight) in pairs {
            if history.readers.last() != Some(&reader) {
                history.readers.push(reader);
                history.offsets.push(history.titles.len());
            } else if history.titles.last() == Some(&title) {
                if let Some(last) = history.weights.last_mut() {
                    *last += weight;
                }
                continue;
            }
            history.titles.push(title);
            history.weights.push(weight);
        }
        history.offsets.push(history.titles.len());
        history
    }

    /// Titles readers opened before the window the engagement is learned from (events are
    /// kept longer than the model looks back): they count for nothing in the model, and are
    /// never recommended to their reader.
    pub fn with_earlier(mut self, mut opened: Vec<(i64, u32)>) -> Self {
        opened.sort_unstable();
        opened.dedup();
        self.earlier = opened;
        self
    }

    /// The titles the reader at position `r` opened before the window.
    fn earlier_of(&self, r: usize) -> impl Iterator<Item = u32> + '_ {
        let reader = self.readers[r];
        let start = self.earlier.partition_point(|&(id, _)| id < reader);
        self.earlier[start..]
            .iter()
            .take_while(move |&&(id, _)| id == reader)
            .map(|&(_, title)| title)
    }

    /// The reader at position `r`: titles and engagement.
    pub fn of(&self, r: usize) -> (&[u32], &[f32]) {
        let range = self.offsets[r]..self.offsets[r + 1];
        (&self.titles[range.clone()], &self.weights[range])
    }

    pub fn position(&self, reader: i64) -> Option<usize> {
        self.readers.binary_search(&reader).ok()
    }

    pub fn pairs(&self) -> usize {
        self.titles.len()
    }
}

/// What the signals learned from a history.
#[derive(Debug)]
pub struct Model {
    /// Per title, its neighbours and their similarity, best first.
    neighbour_offsets: Vec<usize>,
    neighbours: Vec<(u32, f32)>,
    /// Per title, 0..1.
    popularity: Vec<f32>,
    /// Titles by popularity, most popular first.
    chart: Vec<u32>,
    /// Per genre, its most popular titles.
    genre_chart: Vec<Vec<u32>>,
    /// Per author, their titles by popularity.
    author_titles: Vec<Vec<u32>>,
}

/// How many threads the work is split over.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs `work` over `0..n` in contiguous chunks on every core; the results come back in order.
fn par_chunks<T: Send>(n: usize, work: impl Fn(std::ops::Range<usize>) -> Vec<T> + Sync) -> Vec<T> {
    let threads = threads().min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                scope.spawn(move || work(range))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Learns the signals from `history` over `catalog`.
pub fn train(catalog: &Catalog, history: &History) -> Model {
    let n_titles = catalog.len();

    // Popularity: engagement summed over readers.
    let mut raw_popularity = vec![0.0_f64; n_titles];
    for (&title, &weight) in history.titles.iter().zip(&history.weights) {
        raw_popularity[title as usize] += f64::from(weight);
    }
    let max = raw_popularity.iter().copied().fold(0.0, f64::max);
    let popularity: Vec<f32> = raw_popularity
        .iter()
        .map(|&p| if max > 0.0 { (p / max) as f32 } else { 0.0 })
        .collect();
    let mut chart: Vec<u32> = (0..n_titles as u32).collect();
    chart.sort_by(|&a, &b| {
        raw_popularity[b as usize]
            .total_cmp(&raw_popularity[a as usize])
            .then(catalog.ids[a as usize].cmp(&catalog.ids[b as usize]))
    });
    let mut genre_chart = vec![Vec::new(); catalog.genre_names.len()];
    let mut author_titles = vec![Vec::new(); catalog.author_names.len()];
    for &title in &chart {
        for &g in &catalog.genres[title as usize] {
            if genre_chart[g as usize].len() < GENRE_CANDIDATES {
                genre_chart[g as usize].push(title);
            }
        }
        for &a in &catalog.authors[title as usize] {
            author_titles[a as usize].push(title);
        }
    }

    // Co-reading: each reader's heaviest titles, and per title the readers who read it.
    let co_history: Vec<Vec<u32>> = (0..history.readers.len())
        .map(|r| {
            let (titles, weights) = history.of(r);
            if titles.len() <= MAX_CO_HISTORY {
                return titles.to_vec();
            }
            let mut order: Vec<usize> = (0..titles.len()).collect();
            order.sort_by(|&a, &b| {
                weights[b]
                    .total_cmp(&weights[a])
                    .then(titles[a].cmp(&titles[b]))
            });
            order.truncate(MAX_CO_HISTORY);
            let mut kept: Vec<u32> = order.into_iter().map(|i| titles[i]).collect();
            kept.sort_unstable();
            kept
        })
        .collect();
    let mut readers_of: Vec<Vec<u32>> = vec![Vec::new(); n_titles];
    for (r, titles) in co_history.iter().enumerate() {
        for &t in titles {
            readers_of[t as usize].push(r as u32);
        }
    }

    let lists: Vec<Vec<(u32, f32)>> = par_chunks(n_titles, |range| {
        let mut counts = vec![0_u32; n_titles];
        let mut touched: Vec<u32> = Vec::new();
        range
            .map(|i| {
                for &r in &readers_of[i] {
                    for &j in &co_history[r as usize] {
                        if j as usize != i {
                            if counts[j as usize] == 0 {
                                touched.push(j);
                            }
                            counts[j as usize] += 1;
                        }
                    }
                }
                let n_i = readers_of[i].len() as f32;
                let mut similar: Vec<(u32, f32)> = touched
                    .iter()
                    .filter(|&&j| counts[j as usize] >= MIN_CO_READERS)
                    .map(|&j| {
                        let n_j = readers_of[j as usize].len() as f32;
                        (j, counts[j as usize] as f32 / (n_i * n_j).sqrt())
                    })
                    .collect();
                for &j in &touched {
                    counts[j as usize] = 0;
                }
                touched.clear();
                similar.sort_by(|a, b| {
                    b.1.total_cmp(&a.1)
                        .then(catalog.ids[a.0 as usize].cmp(&catalog.ids[b.0 as usize]))
                });
                similar.truncate(NEIGHBOURS);
                similar
            })
            .collect()
    });
    let mut neighbour_offsets = Vec::with_capacity(n_titles + 1);
    let mut neighbours = Vec::new();
    for list in lists {
        neighbour_offsets.push(neighbours.len());
        neighbours.extend(list);
    }
    neighbour_offsets.push(neighbours.len());

    Model {
        neighbour_offsets,
        neighbours,
        popularity,
        chart,
        genre_chart,
        author_titles,
    }
}

impl Model {
    fn neighbours_of(&self, title: u32) -> &[(u32, f32)] {
        let t = title as usize;
        &self.neighbours[self.neighbour_offsets[t]..self.neighbour_offsets[t + 1]]
    }

    /// Titles with at least one neighbour (for the summary).
    pub fn titles_with_neighbours(&self) -> usize {
        self.neighbour_offsets
            .windows(2)
            .filter(|w| w[1] > w[0])
            .count()
    }
}

/// Why a title is recommended: the signal that contributed most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Readers of this title (one the reader read) read it too.
    Similar(u32),
    /// It is in this genre, one the reader reads.
    Genre(u32),
    /// It is by this author, one the reader reads.
    Author(u32),
    Popular,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Similar(_) => "similar",
            Self::Genre(_) => "genre",
            Self::Author(_) => "author",
            Self::Popular => "popular",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub title: u32,
    pub score: f32,
    pub reason: Reason,
}

/// One reader's working space, reused across readers on a thread.
struct Scratch {
    seen: Vec<bool>,
    candidate: Vec<bool>,
    candidates: Vec<u32>,
    similar: Vec<f32>,
    similar_from: Vec<(u32, f32)>,
    genre_profile: Vec<f32>,
    author_profile: Vec<f32>,
    authors_touched: Vec<u32>,
}

impl Scratch {
    fn new(catalog: &Catalog) -> Self {
        Self {
            seen: vec![false; catalog.len()],
            candidate: vec![false; catalog.len()],
            candidates: Vec::new(),
            similar: vec![0.0; catalog.len()],
            similar_from: vec![(0, 0.0); catalog.len()],
            genre_profile: vec![0.0; catalog.genre_names.len()],
            author_profile: vec![0.0; catalog.author_names.len()],
            authors_touched: Vec::new(),
        }
    }

    fn add(&mut self, title: u32) {
        let t = title as usize;
        if !self.seen[t] && !self.candidate[t] {
            self.candidate[t] = true;
            self.candidates.push(title);
        }
    }

    fn clear<'t>(&mut self, titles: impl Iterator<Item = &'t u32>) {
        for &t in titles {
            self.seen[t as usize] = false;
        }
        for &t in &self.candidates {
            self.candidate[t as usize] = false;
            self.similar[t as usize] = 0.0;
            self.similar_from[t as usize] = (0, 0.0);
        }
        self.candidates.clear();
        self.genre_profile.iter_mut().for_each(|g| *g = 0.0);
        for &a in &self.authors_touched {
            self.author_profile[a as usize] = 0.0;
        }
        self.authors_touched.clear();
    }
}

/// What one reader opened: in the window with their engagement, and before it.
struct Read<'a> {
    titles: &'a [u32],
    weights: &'a [f32],
    earlier: &'a [u32],
}

/// The top `n` titles for one reader under `variant`; none they opened.
fn recommend_one(
    catalog: &Catalog,
    model: &Model,
    read: &Read<'_>,
    variant: &Variant,
    n: usize,
    scratch: &mut Scratch,
) -> Vec<Pick> {
    let (titles, weights) = (read.titles, read.weights);
    let variant = if titles.len() < MIN_HISTORY {
        &COLD_START
    } else {
        variant
    };
    let max_weight = weights
        .iter()
        .copied()
        .fold(0.0_f32, f32::max)
        .max(f32::MIN_POSITIVE);
    for &t in titles.iter().chain(read.earlier) {
        scratch.seen[t as usize] = true;
    }

    // Similar: engagement-weighted similarity to what the reader read, and who contributed most.
    for (&i, &w) in titles.iter().zip(weights) {
        let w = w / max_weight;
        for &(j, s) in model.neighbours_of(i) {
            if scratch.seen[j as usize] {
                continue;
            }
            scratch.add(j);
            let contribution = w * s;
            scratch.similar[j as usize] += contribution;
            let best = &mut scratch.similar_from[j as usize];
            if contribution > best.1 {
                *best = (i, contribution);
            }
        }
    }

    // Content: the reader's genres and authors, as shares of their engagement.
    let total: f32 = weights.iter().sum::<f32>().max(f32::MIN_POSITIVE);
    for (&i, &w) in titles.iter().zip(weights) {
        for &g in &catalog.genres[i as usize] {
            scratch.genre_profile[g as usize] += w / total;
        }
        for &a in &catalog.authors[i as usize] {
            if scratch.author_profile[a as usize] == 0.0 {
                scratch.authors_touched.push(a);
            }
            scratch.author_profile[a as usize] += w / total;
        }
    }
    let mut top_genres: Vec<u32> = (0..catalog.genre_names.len() as u32)
        .filter(|&g| scratch.genre_profile[g as usize] > 0.0)
        .collect();
    top_genres.sort_by(|&a, &b| {
        scratch.genre_profile[b as usize]
            .total_cmp(&scratch.genre_profile[a as usize])
            .then(a.cmp(&b))
    });
    top_genres.truncate(TOP_GENRES);
    for &g in &top_genres {
        for &t in &model.genre_chart[g as usize] {
            scratch.add(t);
        }
    }
    let mut top_authors = scratch.authors_touched.clone();
    top_authors.sort_by(|&a, &b| {
        scratch.author_profile[b as usize]
            .total_cmp(&scratch.author_profile[a as usize])
            .then(a.cmp(&b))
    });
    top_authors.truncate(TOP_AUTHORS);
    for &a in &top_authors {
        for &t in model.author_titles[a as usize]
            .iter()
            .take(GENRE_CANDIDATES)
        {
            scratch.add(t);
        }
    }
    for &t in model.chart.iter().take(GENRE_CANDIDATES + titles.len()) {
        scratch.add(t);
    }

    // Each signal scaled to 0..1 for this reader, then blended.
    struct Scored {
        title: u32,
        similar: f32,
        genre: (f32, u32),
        author: (f32, u32),
    }
    let scored: Vec<Scored> = scratch
        .candidates
        .iter()
        .map(|&t| {
            let genres = &catalog.genres[t as usize];
            let mut genre = (0.0_f32, 0_u32);
            let mut genre_sum = 0.0_f32;
            for &g in genres {
                let p = scratch.genre_profile[g as usize];
                genre_sum += p;
                if p > genre.0 {
                    genre = (p, g);
                }
            }
            let genre_score = if genres.is_empty() {
                0.0
            } else {
                genre_sum / (genres.len() as f32).sqrt()
            };
            let mut author = (0.0_f32, 0_u32);
            for &a in &catalog.authors[t as usize] {
                let p = scratch.author_profile[a as usize];
                if p > author.0 {
                    author = (p, a);
                }
            }
            Scored {
                title: t,
                similar: scratch.similar[t as usize],
                genre: (genre_score, genre.1),
                author: (author.0 * AUTHOR_WEIGHT, author.1),
            }
        })
        .collect();
    let max_similar = scored.iter().map(|s| s.similar).fold(0.0, f32::max);
    let max_content = scored
        .iter()
        .map(|s| s.genre.0 + s.author.0)
        .fold(0.0, f32::max);
    let scale = |x: f32, max: f32| if max > 0.0 { x / max } else { 0.0 };

    let mut picks: Vec<Pick> = scored
        .iter()
        .map(|s| {
            let similar = variant.similar * scale(s.similar, max_similar);
            let genre = variant.content * scale(s.genre.0, max_content);
            let author = variant.content * scale(s.author.0, max_content);
            let popular = variant.popular * model.popularity[s.title as usize];
            let reason = [
                (
                    similar,
                    Reason::Similar(scratch.similar_from[s.title as usize].0),
                ),
                (genre, Reason::Genre(s.genre.1)),
                (author, Reason::Author(s.author.1)),
                (popular, Reason::Popular),
            ]
            .into_iter()
            .fold((0.0_f32, Reason::Popular), |best, (v, r)| {
                if v > best.0 { (v, r) } else { best }
            })
            .1;
            Pick {
                title: s.title,
                score: similar + genre + author + popular,
                reason,
            }
        })
        .collect();
    picks.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(catalog.ids[a.title as usize].cmp(&catalog.ids[b.title as usize]))
    });
    picks.truncate(n);
    scratch.clear(titles.iter().chain(read.earlier));
    picks
}

/// Recommendations for the readers at `positions` of `history` (each under its own arm, or
/// `fixed` for all), in the order given.
pub fn recommend(
    catalog: &Catalog,
    model: &Model,
    history: &History,
    positions: &[usize],
    fixed: Option<&Variant>,
    n: usize,
) -> Vec<Vec<Pick>> {
    par_chunks(positions.len(), |range| {
        let mut scratch = Scratch::new(catalog);
        range
            .map(|k| {
                let r = positions[k];
                let (titles, weights) = history.of(r);
                let variant = fixed.unwrap_or_else(|| variant_of(history.readers[r]));
                let earlier: Vec<u32> = history.earlier_of(r).collect();
                let read = Read {
                    titles,
                    weights,
                    earlier: &earlier,
                };
                recommend_one(catalog, model, &read, variant, n, &mut scratch)
            })
            .collect()
    })
}

/// One variant's offline quality on the held-out day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub variant: &'static str,
    pub readers: usize,
    pub precision_at_10: f64,
    pub recall_at_10: f64,
}

/// Precision@k and recall@k of `lists` against what each reader went on to read (`relevant`),
/// averaged over readers with anything relevant.
pub fn precision_recall(lists: &[Vec<Pick>], relevant: &[Vec<u32>], k: usize) -> (usize, f64, f64) {
    let mut readers = 0;
    let (mut precision, mut recall) = (0.0, 0.0);
    for (list, relevant) in lists.iter().zip(relevant) {
        if relevant.is_empty() {
            continue;
        }
        readers += 1;
        let hits = list
            .iter()
            .take(k)
            .filter(|p| relevant.contains(&p.title))
            .count() as f64;
        precision += hits / k as f64;
        recall += hits / relevant.len() as f64;
    }
    if readers == 0 {
        return (0, 0.0, 0.0);
    }
    (readers, precision / readers as f64, recall / readers as f64)
}

/// Evaluates every arm and the popularity baseline: each is asked for every held-out reader
/// (offline, each reader can be scored under every arm), trained on the history before the
/// held-out day. `held_out` is (position in `before`, titles first read on the day).
pub fn evaluate(
    catalog: &Catalog,
    before: &History,
    held_out: &[(usize, Vec<u32>)],
) -> Vec<Evaluation> {
    let model = train(catalog, before);
    let positions: Vec<usize> = held_out.iter().map(|h| h.0).collect();
    let relevant: Vec<Vec<u32>> = held_out.iter().map(|h| h.1.clone()).collect();
    VARIANTS
        .iter()
        .chain([&POPULARITY_ONLY])
        .map(|variant| {
            let lists = recommend(catalog, &model, before, &positions, Some(variant), EVAL_K);
            let (readers, precision, recall) = precision_recall(&lists, &relevant, EVAL_K);
            Evaluation {
                variant: variant.name,
                readers,
                precision_at_10: precision,
                recall_at_10: recall,
            }
        })
        .collect()
}

/// Chooses the held-out readers: those with history before the day, ordered by their stable
/// hash and capped, so each run evaluates the same sample.
pub fn eval_sample(mut candidates: Vec<(i64, usize, Vec<u32>)>) -> Vec<(usize, Vec<u32>)> {
    candidates.sort_by_key(|c| (reader_hash(c.0), c.0));
    candidates.truncate(MAX_EVAL_READERS);
    candidates.sort_by_key(|c| c.1);
    candidates.into_iter().map(|c| (c.1, c.2)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tastes: romance readers (1..=40) and action readers (41..=100); action titles are
    /// the more popular overall. Title ids: romance 1..=10 by author "R", action 11..=20 by "A".
    fn population() -> (Catalog, Vec<(i64, u32, f32)>) {
        let mut catalog = Catalog::default();
        for id in 1..=20_i64 {
            let (genre, author) = if id <= 10 {
                ("ROMANCE", "R")
            } else {
                ("ACTION", "A")
            };
            catalog.add(id, &[genre.to_owned()], &[format!("{author}{}", id % 3)]);
        }
        let mut pairs = Vec::new();
        for reader in 1..=100_i64 {
            let range: Vec<i64> = if reader <= 40 {
                (1..=10).collect()
            } else {
                (11..=20).collect()
            };
            // Each reader read 5 of their genre's 10 titles, a different 5 by reader.
            for (k, id) in range.iter().enumerate() {
                if (k as i64 + reader) % 2 == 0 {
                    let title = catalog.title(*id).expect("title");
                    pairs.push((reader, title, 1.0 + (k as f32) * 0.1));
                }
            }
        }
        (catalog, pairs)
    }

    #[test]
    fn arms_are_stable_and_even() {
        assert_eq!(variant_of(42), variant_of(42));
        let a = (1..=10_000)
            .filter(|&u| variant_of(u).name == VARIANTS[0].name)
            .count();
        assert!((4_700..=5_300).contains(&a), "{a} of 10,000 in A");
    }

    #[test]
    fn history_merges_repeated_pairs_and_drops_empty_ones() {
        let history = History::from_pairs(vec![(2, 1, 1.0), (1, 3, 1.0), (2, 1, 2.0), (1, 4, 0.0)]);
        assert_eq!(history.readers, vec![1, 2]);
        assert_eq!(history.of(0), (&[3][..], &[1.0][..]));
        assert_eq!(history.of(1), (&[1][..], &[3.0][..]));
    }

    #[test]
    fn recommendations_exclude_what_the_reader_opened_and_follow_their_taste() {
        let (catalog, pairs) = population();
        let history = History::from_pairs(pairs);
        let model = train(&catalog, &history);
        let positions: Vec<usize> = (0..history.readers.len()).collect();
        let lists = recommend(&catalog, &model, &history, &positions, None, 5);
        for (r, list) in lists.iter().enumerate() {
            let (opened, _) = history.of(r);
            assert_eq!(list.len(), 5);
            for pick in list {
                assert!(
                    !opened.contains(&pick.title),
                    "reader {} got an opened title",
                    history.readers[r]
                );
            }
            // The first picks are of the reader's own genre.
            let romance = history.readers[r] <= 40;
            let id = catalog.ids[list[0].title as usize];
            assert_eq!(id <= 10, romance, "reader {} got {id}", history.readers[r]);
            assert_ne!(list[0].reason, Reason::Popular);
        }
    }

    /// docs/functions/recommendations.md: titles the reader opened in any way are never
    /// recommended, including those opened before the model's window. Planted: each reader's
    /// would-be first pick, marked as opened long ago.
    #[test]
    fn titles_opened_before_the_window_are_never_recommended() {
        let (catalog, pairs) = population();
        let history = History::from_pairs(pairs.clone());
        let model = train(&catalog, &history);
        let positions: Vec<usize> = (0..history.readers.len()).collect();
        let first_picks: Vec<(i64, u32)> =
            recommend(&catalog, &model, &history, &positions, None, 5)
                .iter()
                .enumerate()
                .map(|(r, list)| (history.readers[r], list[0].title))
                .collect();
        let history = History::from_pairs(pairs).with_earlier(first_picks.clone());
        let lists = recommend(&catalog, &model, &history, &positions, None, 5);
        for ((reader, old), list) in first_picks.iter().zip(&lists) {
            assert_eq!(list.len(), 5, "reader {reader}");
            assert!(
                list.iter().all(|p| p.title != *old),
                "reader {reader} was recommended title {old}, opened before the window"
            );
        }
    }

    #[test]
    fn a_rerun_gives_the_same_lists() {
        let (catalog, pairs) = population();
        let mut shuffled = pairs.clone();
        shuffled.reverse();
        let a = History::from_pairs(pairs);
        let b = History::from_pairs(shuffled);
        let positions: Vec<usize> = (0..a.readers.len()).collect();
        let first = recommend(&catalog, &train(&catalog, &a), &a, &positions, None, TOP_N);
        let again = recommend(&catalog, &train(&catalog, &b), &b, &positions, None, TOP_N);
        assert_eq!(first, again);
    }

    #[test]
    fn readers_with_little_history_get_the_chart() {
        let (mut catalog, mut pairs) = population();
        catalog.add(99, &["DRAMA".to_owned()], &[]);
        let title = catalog.title(99).expect("title");
        pairs.push((500, title, 1.0));
        let history = History::from_pairs(pairs);
        let model = train(&catalog, &history);
        let r = history.position(500).expect("reader");
        let list = recommend(&catalog, &model, &history, &[r], None, 5).remove(0);
        assert_eq!(list.len(), 5);
        assert!(list.iter().all(|p| p.title != title));
        // The most popular titles are action ones.
        assert!(
            list.iter().all(|p| catalog.ids[p.title as usize] > 10),
            "{list:?}"
        );
    }

    #[test]
    fn the_blend_beats_popularity_on_a_population_with_known_tastes() {
        let (catalog, pairs) = population();
        let history = History::from_pairs(pairs);
        // Each romance reader goes on to read one romance title they had not opened.
        let held_out: Vec<(usize, Vec<u32>)> = (0..history.readers.len())
            .filter(|&r| history.readers[r] <= 40)
            .map(|r| {
                let (opened, _) = history.of(r);
                let next = (1..=10)
                    .filter_map(|id| catalog.title(id))
                    .find(|t| !opened.contains(t))
                    .expect("an unread romance title");
                (r, vec![next])
            })
            .collect();
        let results = evaluate(&catalog, &history, &held_out);
        let baseline = results
            .iter()
            .find(|e| e.variant == "popularity")
            .expect("baseline");
        assert_eq!(baseline.readers, 40);
        for arm in results.iter().filter(|e| e.variant != "popularity") {
            assert!(
                arm.recall_at_10 > baseline.recall_at_10
                    && arm.precision_at_10 > baseline.precision_at_10,
                "{arm:?} vs {baseline:?}"
            );
        }
    }

    #[test]
    fn precision_and_recall_count_hits_in_the_first_k() {
        let pick = |title| Pick {
            title,
            score: 1.0,
            reason: Reason::Popular,
        };
        let lists = vec![vec![pick(1), pick(2)], vec![pick(3)], vec![pick(9)]];
        let relevant = vec![vec![2, 5], vec![], vec![4]];
        let (readers, precision, recall) = precision_recall(&lists, &relevant, 2);
        assert_eq!(readers, 2);
        assert!((precision - 0.25).abs() < 1e-9);
        assert!((recall - 0.25).abs() < 1e-9);
    }

    #[test]
    fn the_evaluation_sample_is_stable_and_capped() {
        let candidates: Vec<(i64, usize, Vec<u32>)> = (0..(MAX_EVAL_READERS as i64 + 10))
            .map(|u| (u, u as usize, vec![1]))
            .collect();
        let a = eval_sample(candidates.clone());
        let mut reversed = candidates;
        reversed.reverse();
        assert_eq!(a, eval_sample(reversed));
        assert_eq!(a.len(), MAX_EVAL_READERS);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
