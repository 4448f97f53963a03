//! The published contract suite against the file log: every clause it can
//! take, and what it lacks named, so those clauses show up as ignored.

use eventlog_conformance::anyhow::Result;
use eventlog_conformance::{Fixture, async_trait};
use eventlog_core::EventLog;
use eventlog_file::FileEventLog;
use std::path::PathBuf;
use std::sync::Arc;

/// A directory of the test's own, removed when the test ends.
struct Files {
    root: PathBuf,
}

impl Files {
    fn new() -> Result<Self> {
        let root =
            std::env::temp_dir().join(eventlog_conformance::support::unique("eventlog-file"));
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    /// How many files named `name` of `log` this process holds open, from
    /// the kernel's own table of its file descriptors.
    fn open_files(&self, log: &str, name: &str) -> Result<usize> {
        let target = self.root.join(log).join(name);
        let mut count = 0;
        for fd in std::fs::read_dir("/proc/self/fd")? {
            if std::fs::read_link(fd?.path()).is_ok_and(|path| path == target) {
                count += 1;
            }
        }
        Ok(count)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[async_trait]
impl Fixture for Files {
    async fn open(&self, log: &str) -> Result<Arc<dyn EventLog>> {
        Ok(Arc::new(FileEventLog::open(&self.root, log)?))
    }

    /// The readers' open files: every handle and every reader holds the
    /// index open, and only handles hold the lock.
    async fn subscription_resources(&self, log: &str) -> Result<usize> {
        Ok(self.open_files(log, "index")? - self.open_files(log, "lock")?)
    }
}

// No broker: nothing outside the backend reads its positions or its files,
// removes events, deletes logs or takes the disk away.
eventlog_conformance::contract_tests!(
    Files::new()?,
    lacks: [broker_positions, wire_format, foreign_events, retention, deletion, faults]
);
