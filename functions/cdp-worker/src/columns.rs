//! The CDP's two Parquet files, written a chunk (one row group) at a time on a blocking thread
//! while the next chunk is read from the database, so memory holds at most a few chunks
//! whatever the month's size.
//!
//! The `parquet` crate's column writers are used directly, without Arrow: two fixed schemas
//! do not need Arrow's in-memory format, and leaving it out keeps the function small. A file
//! is deterministic: rows come in a fixed order, the writer's version is pinned in
//! `created_by`, and nothing time-dependent is written, so the same data gives the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, NaiveDate, Utc};
use domain::backfill::DailyCounts;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

/// One row per campaign and day.
pub const PERFORMANCE_SCHEMA: &str = "
message performance {
  required int64 campaign_id;
  required int32 stat_date (DATE);
  required int64 impressions;
  required int64 clicks;
  required int64 conversions;
  required int64 spend_micros;
  optional double ctr;
  optional double cvr;
  optional double cpa_micros;
}";

/// One row per pseudonymous device.
pub const AUDIENCE_SCHEMA: &str = "
message audience {
  required binary device_key (STRING);
  required int64 impressions;
  required int64 clicks;
  required int64 conversions;
  required int64 spend_micros;
  required int64 first_seen (TIMESTAMP(MICROS,true));
  required int64 last_seen (TIMESTAMP(MICROS,true));
}";

/// Rows of one file, held column by column until they are written as a row group.
pub trait Chunk: Send + 'static {
    fn rows(&self) -> usize;
    fn write(&self, group: &mut SerializedRowGroupWriter<'_, Sink>) -> anyhow::Result<()>;
}

#[derive(Default)]
pub struct PerformanceChunk {
    campaign_id: Vec<i64>,
    stat_date: Vec<i32>,
    impressions: Vec<i64>,
    clicks: Vec<i64>,
    conversions: Vec<i64>,
    spend_micros: Vec<i64>,
    ctr: Optional,
    cvr: Optional,
    cpa_micros: Optional,
}

impl PerformanceChunk {
    pub fn push(&mut self, campaign_id: i64, day: NaiveDate, counts: &DailyCounts) {
        let rates = counts.rates();
        self.campaign_id.push(campaign_id);
        self.stat_date.push(days_since_epoch(day));
        self.impressions.push(counts.impressions);
        self.clicks.push(counts.clicks);
        self.conversions.push(counts.conversions);
        self.spend_micros.push(counts.cost_micros);
        self.ctr.push(rates.ctr);
        self.cvr.push(rates.cvr);
        self.cpa_micros.push(rates.cpa_micros);
    }
}

impl Chunk for PerformanceChunk {
    fn rows(&self) -> usize {
        self.campaign_id.len()
    }

    fn write(&self, group: &mut SerializedRowGroupWriter<'_, Sink>) -> anyhow::Result<()> {
        column::<Int64Type>(group, &self.campaign_id, None)?;
        column::<Int32Type>(group, &self.stat_date, None)?;
        for values in [
            &self.impressions,
            &self.clicks,
            &self.conversions,
            &self.spend_micros,
        ] {
            column::<Int64Type>(group, values, None)?;
        }
        for values in [&self.ctr, &self.cvr, &self.cpa_micros] {
            column::<DoubleType>(group, &values.values, Some(&values.levels))?;
        }
        Ok(())
    }
}

/// One audience fact: a device's counts and when it was first and last seen in the month.
pub struct DeviceFact<'a> {
    pub device_key: String,
    pub counts: &'a DailyCounts,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[derive(Default)]
pub struct AudienceChunk {
    device_key: Vec<ByteArray>,
    impressions: Vec<i64>,
    clicks: Vec<i64>,
    conversions: Vec<i64>,
    spend_micros: Vec<i64>,
    first_seen: Vec<i64>,
    last_seen: Vec<i64>,
}

impl AudienceChunk {
    pub fn push(&mut self, fact: DeviceFact<'_>) {
        self.device_key
            .push(ByteArray::from(fact.device_key.into_bytes()));
        self.impressions.push(fact.counts.impressions);
        self.clicks.push(fact.counts.clicks);
        self.conversions.push(fact.counts.conversions);
        self.spend_micros.push(fact.counts.cost_micros);
        self.first_seen.push(fact.first_seen.timestamp_micros());
        self.last_seen.push(fact.last_seen.timestamp_micros());
    }
}

impl Chunk for AudienceChunk {
    fn rows(&self) -> usize {
        self.device_key.len()
    }

    fn write(&self, group: &mut SerializedRowGroupWriter<'_, Sink>) -> anyhow::Result<()> {
        column::<ByteArrayType>(group, &self.device_key, None)?;
        for values in [
            &self.impressions,
            &self.clicks,
            &self.conversions,
            &self.spend_micros,
            &self.first_seen,
            &self.last_seen,
        ] {
            column::<Int64Type>(group, values, None)?;
        }
        Ok(())
    }
}

/// An optional column: the present values, and a definition level per row (1 present, 0 null).
#[derive(Default)]
struct Optional {
    values: Vec<f64>,
    levels: Vec<i16>,
}

impl Optional {
    fn push(&mut self, value: Option<f64>) {
        self.levels.push(i16::from(value.is_some()));
        self.values.extend(value);
    }
}

/// Writes the group's next column: `values`, and a definition level per row for an optional
/// column.
fn column<T: DataType>(
    group: &mut SerializedRowGroupWriter<'_, Sink>,
    values: &[T::T],
    levels: Option<&[i16]>,
) -> anyhow::Result<()> {
    let mut column = group
        .next_column()?
        .context("the chunk has more columns than its schema")?;
    column.typed::<T>().write_batch(values, levels, None)?;
    column.close()?;
    Ok(())
}

fn days_since_epoch(day: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    i32::try_from((day - epoch).num_days()).unwrap_or(i32::MAX)
}

/// The file being written, with the SHA-256 and length of what went into it.
pub struct Sink {
    file: BufWriter<File>,
    sha256: Sha256,
    bytes: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.sha256.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A finished file.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Removes a temporary file when dropped, whatever happened to the run.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_file(&self.0)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %err, "temporary file not removed");
        }
    }
}

/// Starts writing a file of `schema` at `path` on a blocking thread. Chunks sent to the
/// returned sender become row groups in order; dropping the sender finishes the file. The
/// channel holds one chunk, so the reader waits while the writer is behind.
pub fn spawn<C: Chunk>(
    schema: &'static str,
    path: &Path,
) -> (
    mpsc::Sender<C>,
    tokio::task::JoinHandle<anyhow::Result<Written>>,
) {
    let (sender, mut chunks) = mpsc::channel::<C>(1);
    let path = path.to_owned();
    let writer = tokio::task::spawn_blocking(move || {
        let schema = Arc::new(parse_message_type(schema)?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_created_by("adworkers cdp-worker (parquet-rs 60)".to_owned())
            .build();
        let sink = Sink {
            file: BufWriter::with_capacity(
                1 << 20,
                File::create(&path).with_context(|| format!("create {}", path.display()))?,
            ),
            sha256: Sha256::new(),
            bytes: 0,
        };
        let mut writer = SerializedFileWriter::new(sink, schema, Arc::new(properties))?;
        let mut records = 0u64;
        while let Some(chunk) = chunks.blocking_recv() {
            if chunk.rows() == 0 {
                continue;
            }
            let mut group = writer.next_row_group()?;
            chunk.write(&mut group)?;
            group.close()?;
            records += chunk.rows() as u64;
        }
        let mut sink = writer.into_inner()?;
        sink.flush()?;
        Ok(Written {
            path,
            records,
            bytes: sink.bytes,
            sha256: hex::encode(sink.sha256.finalize()),
        })
    });
    (sender, writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader as _, SerializedFileReader};

    fn counts(impressions: i64, clicks: i64) -> DailyCounts {
        DailyCounts {
            impressions,
            clicks,
            conversions: 0,
            cost_micros: 5,
        }
    }

    async fn write_twice(rows: usize, chunk_rows: usize) -> anyhow::Result<(Written, Written)> {
        let dir = std::env::temp_dir();
        let mut written = Vec::new();
        for name in ["a", "b"] {
            let path = dir.join(format!("cdp-test-{}-{name}.parquet", uuid::Uuid::new_v4()));
            let (sender, writer) = spawn::<PerformanceChunk>(PERFORMANCE_SCHEMA, &path);
            let mut chunk = PerformanceChunk::default();
            for row in 0..rows {
                let day =
                    NaiveDate::from_ymd_opt(2026, 10, 1 + (row % 28) as u32).unwrap_or_default();
                chunk.push(row as i64, day, &counts(row as i64, 0));
                if chunk.rows() == chunk_rows {
                    sender.send(std::mem::take(&mut chunk)).await?;
                }
            }
            sender.send(chunk).await?;
            drop(sender);
            written.push(writer.await??);
        }
        let second = written.pop().context("two files")?;
        let first = written.pop().context("two files")?;
        Ok((first, second))
    }

    #[tokio::test]
    async fn the_same_rows_give_the_same_bytes_in_row_groups_of_a_chunk() -> anyhow::Result<()> {
        let (first, second) = write_twice(2_500, 1_000).await?;
        let _cleanup = (TempFile(first.path.clone()), TempFile(second.path.clone()));
        assert_eq!(first.records, 2_500);
        assert_eq!(first.sha256, second.sha256);
        assert_eq!(first.bytes, std::fs::metadata(&first.path)?.len());
        let reader = SerializedFileReader::new(File::open(&first.path)?)?;
        let metadata = reader.metadata();
        assert_eq!(metadata.num_row_groups(), 3);
        assert_eq!(metadata.file_metadata().num_rows(), 2_500);
        // The first row's CTR is null (no impressions), the second's 0.
        let rows: Vec<_> = reader
            .get_row_iter(None)?
            .take(2)
            .collect::<Result<_, _>>()?;
        let ctr = |row: &parquet::record::Row| {
            row.get_column_iter()
                .find(|(name, _)| name.as_str() == "ctr")
                .map(|(_, value)| value.clone())
        };
        assert_eq!(ctr(&rows[0]), Some(parquet::record::Field::Null));
        assert_eq!(ctr(&rows[1]), Some(parquet::record::Field::Double(0.0)));
        Ok(())
    }

    #[tokio::test]
    async fn an_empty_month_is_a_valid_file_with_no_rows() -> anyhow::Result<()> {
        let (first, second) = write_twice(0, 10).await?;
        let _cleanup = (TempFile(first.path.clone()), TempFile(second.path.clone()));
        let reader = SerializedFileReader::new(File::open(&first.path)?)?;
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
        Ok(())
    }
}
