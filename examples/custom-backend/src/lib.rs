//! An eventlog backend outside the workspace: each log is a directory of
//! three files and a folder, written by any number of handles and
//! processes on one machine.
//!
//! * `events`: the records, each a little-endian `u32` length and the
//!   envelope as CloudEvents JSON;
//! * `index`: one little-endian `u64` per event, the offset of its record,
//!   so event `n` is found at `(n - 1) * 8` without a scan;
//! * `lock`: held (`File::lock`) by every write, so appends and moves of
//!   consumers from several handles or processes never interleave;
//! * `consumers/<name>`: the next sequence number of a consumer, replaced
//!   atomically (write, sync, rename).
//!
//! An append writes and syncs its records, then their index entries: an
//! event exists once its index entry does, and a record a crash left
//! without one is cut off by the next append. Readers poll the index's
//! length (there is no broker to wake them).
//!
//! It is a [`Driver`]: the broker primitives only. [`DriverLog`] applies
//! the contract over it (validation, positions, timeouts, the subscription
//! engine), and `tests/conformance.rs` runs the published suite.

use eventlog_core::driver::{
    AsDriverLog, Driver, DriverLog, ReadLimits, Reader, Record, SubscriptionSettings, Undecodable,
};
use eventlog_core::{
    Appended, Capabilities, EventEnvelope, EventLogError, ExpectedLast, SeqNo, validate,
};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The largest payload an append takes: 1 MiB, as the other backends.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The default bound of each operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a read waits for new events before it returns none.
const READ_WAIT: Duration = Duration::from_millis(500);
/// How often a waiting read looks at the index again.
const POLL: Duration = Duration::from_millis(10);

/// A handle on one file log. Clones share the handle; another
/// [`open`](Self::open) of the same directory and name is another handle on
/// the same log.
#[derive(Clone, Debug)]
pub struct FileEventLog {
    log: DriverLog<FileDriver>,
}

impl FileEventLog {
    /// The log `name` under the directory `root`, created if it is new.
    pub fn open(root: impl AsRef<Path>, name: &str) -> Result<Self, EventLogError> {
        Self::builder(root, name).build()
    }

    /// A builder for the log `name` under `root` with other settings.
    pub fn builder(root: impl AsRef<Path>, name: &str) -> FileEventLogBuilder {
        FileEventLogBuilder {
            dir: root.as_ref().join(name),
            name: name.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            settings: SubscriptionSettings::default(),
        }
    }
}

impl AsDriverLog for FileEventLog {
    type Driver = FileDriver;

    fn driver_log(&self) -> &DriverLog<FileDriver> {
        &self.log
    }
}

/// Builds a [`FileEventLog`]: [`FileEventLog::builder`].
#[derive(Debug, Clone)]
pub struct FileEventLogBuilder {
    dir: PathBuf,
    name: String,
    timeout: Duration,
    settings: SubscriptionSettings,
}

impl FileEventLogBuilder {
    /// Bounds each operation by `timeout` (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Subscriptions follow `settings` (read-ahead, outage reports).
    pub fn with_subscription_settings(mut self, settings: SubscriptionSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Checks the name, creates the log's directory if needed, and opens it.
    pub fn build(self) -> Result<FileEventLog, EventLogError> {
        validate::log_name(&self.name)?;
        if self.timeout.is_zero() {
            return Err(EventLogError::InvalidConfig {
                reason: "the timeout must be more than zero".to_owned(),
            });
        }
        std::fs::create_dir_all(self.dir.join("consumers")).map_err(io)?;
        let writer = Writer {
            files: Files::open(&self.dir).map_err(io)?,
            lock: open(&self.dir, "lock").map_err(io)?,
            writing: Mutex::new(()),
        };
        let driver = FileDriver {
            writer: Arc::new(writer),
            timeout: self.timeout,
        };
        Ok(FileEventLog {
            log: DriverLog::with_settings(driver, self.settings),
        })
    }
}

/// The driver of one log directory.
#[derive(Debug)]
pub struct FileDriver {
    writer: Arc<Writer>,
    timeout: Duration,
}

/// Opens (creating it if needed) the file `name` of the log in `dir`.
fn open(dir: &Path, name: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(dir.join(name))
}

/// The events and index of one log directory, as a handle or a reader holds
/// them open.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
    events: File,
    index: File,
}

impl Files {
    fn open(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            events: open(dir, "events")?,
            index: open(dir, "index")?,
        })
    }

    /// How many events the log holds: its whole index entries (a torn
    /// entry a crash left is not one).
    fn last(&self) -> std::io::Result<SeqNo> {
        Ok(self.index.metadata()?.len() / 8)
    }

    /// Where the records end after event `last`: a record beyond it has no
    /// index entry, so a crash cut its append short.
    fn end_of(&self, last: SeqNo) -> std::io::Result<u64> {
        if last == 0 {
            return Ok(0);
        }
        let start = self.offset(last)?;
        Ok(start + 4 + u64::from(self.len_at(start)?))
    }

    fn offset(&self, seq_no: SeqNo) -> std::io::Result<u64> {
        let mut offset = [0; 8];
        self.index.read_exact_at(&mut offset, (seq_no - 1) * 8)?;
        Ok(u64::from_le_bytes(offset))
    }

    /// The length of the record at `at`.
    fn len_at(&self, at: u64) -> std::io::Result<u32> {
        let mut len = [0; 4];
        self.events.read_exact_at(&mut len, at)?;
        Ok(u32::from_le_bytes(len))
    }

    /// The stored events from `next` on, within `limits`.
    fn read_from(&self, next: SeqNo, limits: ReadLimits) -> std::io::Result<Vec<Record>> {
        let last = self.last()?;
        let (mut records, mut bytes) = (Vec::new(), 0);
        for seq_no in next..=last {
            if records.len() >= limits.events || (bytes >= limits.bytes && !records.is_empty()) {
                break;
            }
            let at = self.offset(seq_no)?;
            let mut json = vec![0; self.len_at(at)? as usize];
            self.events.read_exact_at(&mut json, at + 4)?;
            bytes += json.len();
            records.push(match serde_json::from_slice::<EventEnvelope>(&json) {
                Ok(mut event) => {
                    event.seq_no = Some(seq_no);
                    Ok(event)
                }
                Err(err) => Err(Undecodable {
                    seq_no,
                    reason: err.to_string(),
                }),
            });
        }
        Ok(records)
    }
}

/// What a handle writes with: the files and the lock every write holds.
#[derive(Debug)]
struct Writer {
    files: Files,
    lock: File,
    /// The file lock excludes other open files of `lock` (other handles,
    /// other processes) but not this one's concurrent writes: this does.
    writing: Mutex<()>,
}

impl Writer {
    /// Stores `events` after the last one if `expected` holds, under the
    /// lock, and returns their numbers.
    fn append(
        &self,
        events: &[EventEnvelope],
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        let _held = Locked::take(self)?;
        let files = &self.files;
        let last = files.last().map_err(io)?;
        expected.check(last)?;
        let mut at = files.end_of(last).map_err(io)?;
        files.events.set_len(at).map_err(io)?;
        let (mut records, mut index) = (Vec::new(), Vec::with_capacity(events.len() * 8));
        for event in events {
            let json = serde_json::to_vec(event).map_err(|err| backend(err.into()))?;
            let len = u32::try_from(json.len()).map_err(|err| backend(err.into()))?;
            index.extend_from_slice(&at.to_le_bytes());
            records.extend_from_slice(&len.to_le_bytes());
            records.extend_from_slice(&json);
            at += 4 + u64::from(len);
        }
        (&files.events).write_all(&records).map_err(io)?;
        files.events.sync_data().map_err(io)?;
        (&files.index).write_all(&index).map_err(io)?;
        files.index.sync_data().map_err(io)?;
        Ok((last + 1..=last + events.len() as u64)
            .map(Appended::Stored)
            .collect())
    }

    fn consumer(&self, name: &str) -> PathBuf {
        self.files.dir.join("consumers").join(name)
    }

    /// The next sequence number of `consumer`; 1 for one never moved.
    fn next_of(&self, consumer: &str) -> Result<SeqNo, EventLogError> {
        match std::fs::read_to_string(self.consumer(consumer)) {
            Ok(text) => text.trim().parse().map_err(|err| {
                backend(format!("consumer file of `{consumer}` holds {text:?}: {err}").into())
            }),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(1),
            Err(err) => Err(io(err)),
        }
    }

    /// Sets the next sequence number of `consumer` to what `to` makes of
    /// the current one, under the lock.
    fn move_consumer(
        &self,
        consumer: &str,
        to: impl FnOnce(SeqNo) -> SeqNo,
    ) -> Result<(), EventLogError> {
        let _held = Locked::take(self)?;
        let current = self.next_of(consumer)?;
        let next = to(current);
        if next == current {
            return Ok(());
        }
        let path = self.consumer(consumer);
        let temporary = path.with_extension("new");
        let mut file = File::create(&temporary).map_err(io)?;
        file.write_all(next.to_string().as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        std::fs::rename(&temporary, &path).map_err(io)
    }
}

/// The log's lock, released when dropped.
struct Locked<'a> {
    file: &'a File,
    _writing: MutexGuard<'a, ()>,
}

impl<'a> Locked<'a> {
    fn take(writer: &'a Writer) -> Result<Self, EventLogError> {
        // A panic while writing leaves nothing half-done that the next
        // append does not repair: the poison carries no meaning here.
        let writing = writer.writing.lock().unwrap_or_else(|p| p.into_inner());
        writer.lock.lock().map_err(io)?;
        Ok(Self {
            file: &writer.lock,
            _writing: writing,
        })
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn io(err: std::io::Error) -> EventLogError {
    backend(err.into())
}

fn backend(source: eventlog_core::BoxError) -> EventLogError {
    EventLogError::Backend {
        backend: "file",
        source,
    }
}

/// Runs the blocking file work `work` on `on` off the runtime.
async fn blocking<S: Send + Sync + 'static, T: Send + 'static>(
    on: &Arc<S>,
    work: impl FnOnce(&S) -> Result<T, EventLogError> + Send + 'static,
) -> Result<T, EventLogError> {
    let on = on.clone();
    tokio::task::spawn_blocking(move || work(&on))
        .await
        .map_err(|err| backend(err.into()))?
}

impl Driver for FileDriver {
    type Reader = FileReader;

    fn capabilities(&self) -> Capabilities {
        // The lock makes a conditional append easy; deduplication would
        // need an index of (source, id) pairs, which this example leaves out.
        Capabilities::new("file", MAX_PAYLOAD, true).with_conditional_append(true)
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }

    fn read_wait(&self) -> Duration {
        READ_WAIT
    }

    async fn append(
        &self,
        event: EventEnvelope,
        expected: ExpectedLast,
    ) -> Result<Appended, EventLogError> {
        let mut stored = blocking(&self.writer, move |w| w.append(&[event], expected)).await?;
        Ok(stored.remove(0))
    }

    async fn append_batch(
        &self,
        events: Vec<EventEnvelope>,
        expected: ExpectedLast,
    ) -> Result<Vec<Appended>, EventLogError> {
        blocking(&self.writer, move |w| w.append(&events, expected)).await
    }

    async fn last_seq_no(&self) -> Result<SeqNo, EventLogError> {
        blocking(&self.writer, |w| w.files.last().map_err(io)).await
    }

    async fn first_seq_no(&self) -> Result<SeqNo, EventLogError> {
        // Nothing is ever removed from the front.
        Ok(1)
    }

    async fn acknowledged(&self, consumer: &str) -> Result<Option<SeqNo>, EventLogError> {
        let consumer = consumer.to_owned();
        let next = blocking(&self.writer, move |w| w.next_of(&consumer)).await?;
        Ok((next > 1).then_some(next - 1))
    }

    async fn move_consumer(&self, consumer: &str, next: SeqNo) -> Result<(), EventLogError> {
        let consumer = consumer.to_owned();
        blocking(&self.writer, move |w| w.move_consumer(&consumer, |_| next)).await
    }

    async fn ack(&self, consumer: &str, seq_no: SeqNo) -> Result<(), EventLogError> {
        let consumer = consumer.to_owned();
        blocking(&self.writer, move |w| {
            w.move_consumer(&consumer, |next| next.max(seq_no + 1))
        })
        .await
    }

    async fn open_reader(&self, _consumer: &str, from: SeqNo) -> Result<FileReader, EventLogError> {
        let dir = self.writer.files.dir.clone();
        let files = tokio::task::spawn_blocking(move || Files::open(&dir))
            .await
            .map_err(|err| backend(err.into()))?
            .map_err(io)?;
        Ok(FileReader {
            files: Arc::new(files),
            next: from,
        })
    }

    async fn log_exists(&self) -> Result<bool, EventLogError> {
        Ok(self.writer.files.dir.join("index").exists())
    }
}

/// The events of one subscription: files of its own, so dropping it closes
/// them.
#[derive(Debug)]
pub struct FileReader {
    files: Arc<Files>,
    next: SeqNo,
}

impl Reader for FileReader {
    async fn read(
        &mut self,
        records: &mut VecDeque<Record>,
        limits: ReadLimits,
    ) -> Result<(), EventLogError> {
        let deadline = tokio::time::Instant::now() + READ_WAIT;
        loop {
            let next = self.next;
            let read =
                blocking(&self.files, move |f| f.read_from(next, limits).map_err(io)).await?;
            if !read.is_empty() {
                self.next += read.len() as u64;
                records.extend(read);
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
