//! The JSON-lines file device: one writer thread per device takes lines from a bounded queue, chains them, writes a
//! batch with one `write` and one `fdatasync`, then tells every caller its line is durable.
//!
//! The writer is a plain OS thread, not a tokio task, so a device that blocks forever (a FIFO nobody reads, a stuck
//! NFS mount) only stalls that thread: callers wait with a deadline and get an error, and the runtime stays free.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::chain::{self, ChainKey};

/// Lines a device may hold in its queue before new ones are refused at once.
const QUEUE: usize = 16 * 1024;
/// Most lines written per batch.
const BATCH: usize = 1024;

/// Why a line did not reach the audit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("audit device `{device}`: cannot write {path}: {reason}")]
    Io {
        device: String,
        path: PathBuf,
        reason: String,
    },
    #[error("audit device `{device}`: {path} did not accept the entry within {waited_ms} ms")]
    Timeout {
        device: String,
        path: PathBuf,
        waited_ms: u128,
    },
    #[error("audit device `{device}`: queue is full ({path} is not keeping up)")]
    Overloaded { device: String, path: PathBuf },
    #[error("audit device `{device}` is closed")]
    Closed { device: String },
}

type Ack = oneshot::Sender<Result<(), String>>;

enum Job {
    /// Lines written together in this order, and whether they must be on stable storage (fdatasync) before they
    /// are acknowledged.
    Lines(Vec<String>, Ack, bool),
    /// Answer once the file is open (or opening failed), so `enable` can refuse a device it cannot write.
    Ready(Ack),
}

/// A running file device. Dropping it ends the writer thread once its queue is drained.
#[derive(Debug)]
pub struct FileDevice {
    name: String,
    path: PathBuf,
    tx: SyncSender<Job>,
    chain: Arc<Mutex<ChainState>>,
}

/// Where a device's chain stands, as `sys/audit-chain` reports it for pinning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainState {
    /// The hash of the file's genesis record; `None` when line 1 does not verify under the key (a log from before
    /// keyed chains, or an edited one) or the device is not a regular file that was read.
    pub genesis: Option<String>,
    /// The hash of the last line written.
    pub head: Option<String>,
    /// Lines in the file (regular files; for others, lines written since the device started).
    pub lines: u64,
}

/// A line handed to the writer; await it to know it is durable.
pub struct Pending {
    device: String,
    path: PathBuf,
    rx: oneshot::Receiver<Result<(), String>>,
}

impl Pending {
    /// Wait until the line is on disk, at most `deadline`.
    pub async fn wait(self, deadline: Duration) -> Result<(), DeviceError> {
        match tokio::time::timeout(deadline, self.rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(DeviceError::Io {
                device: self.device,
                path: self.path,
                reason,
            }),
            Ok(Err(_)) => Err(DeviceError::Closed { device: self.device }),
            Err(_) => Err(DeviceError::Timeout {
                device: self.device,
                path: self.path,
                waited_ms: deadline.as_millis(),
            }),
        }
    }
}

impl FileDevice {
    /// Start the writer for `path`, chaining under `key`, and wait (at most `deadline`) until the file is open and
    /// its chain is set up.
    pub async fn open(name: &str, path: &Path, key: ChainKey, deadline: Duration) -> Result<FileDevice, DeviceError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let chain = Arc::new(Mutex::new(ChainState::default()));
        let writer = Writer::new(name.to_string(), path.to_path_buf(), key, chain.clone());
        std::thread::Builder::new()
            .name(format!("audit-{name}"))
            .spawn(move || writer.run(rx))
            .map_err(|e| DeviceError::Io {
                device: name.into(),
                path: path.into(),
                reason: e.to_string(),
            })?;
        let dev = FileDevice {
            name: name.to_string(),
            path: path.to_path_buf(),
            tx,
            chain,
        };
        let (ack, rx) = oneshot::channel();
        dev.send(Job::Ready(ack))?;
        dev.pending(rx).wait(deadline).await?;
        Ok(dev)
    }

    /// Where the chain stands now.
    pub fn chain_state(&self) -> ChainState {
        self.chain.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queue entries (JSON objects without `prev_hash`), chained in this order with one acknowledgement; never
    /// blocks. `durable`: acknowledge only after fdatasync (lines of requests that change state); otherwise after
    /// `write(2)` (the lines are in the chain and the kernel's page cache, as Vault's file device).
    pub fn submit(&self, entries_json: Vec<String>, durable: bool) -> Result<Pending, DeviceError> {
        let (ack, rx) = oneshot::channel();
        self.send(Job::Lines(entries_json, ack, durable))?;
        Ok(self.pending(rx))
    }

    fn pending(&self, rx: oneshot::Receiver<Result<(), String>>) -> Pending {
        Pending {
            device: self.name.clone(),
            path: self.path.clone(),
            rx,
        }
    }

    fn send(&self, job: Job) -> Result<(), DeviceError> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => DeviceError::Overloaded {
                device: self.name.clone(),
                path: self.path.clone(),
            },
            TrySendError::Disconnected(_) => DeviceError::Closed {
                device: self.name.clone(),
            },
        })
    }
}

struct Writer {
    device: String,
    path: PathBuf,
    key: ChainKey,
    chain: Arc<Mutex<ChainState>>,
    file: Option<File>,
    prev: String,
    /// Bytes written since the last fdatasync.
    unsynced: usize,
}

/// Unsynced bytes after which even a batch of read lines is synced: otherwise the first durable line after a long
/// run of reads waits for the kernel to flush all of them (hundreds of MB), a stall every writer would see.
const SYNC_BACKLOG: usize = 8 << 20;

impl Writer {
    fn new(device: String, path: PathBuf, key: ChainKey, chain: Arc<Mutex<ChainState>>) -> Self {
        Writer {
            device,
            path,
            key,
            chain,
            file: None,
            prev: String::new(),
            unsynced: 0,
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
        loop {
            match rx.recv_timeout(Duration::from_secs(3600)) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&batch).map_err(|e| e.to_string());
            for job in batch.drain(..) {
                let (Job::Lines(_, ack, _) | Job::Ready(ack)) = job;
                let _ = ack.send(result.clone());
            }
        }
    }

    fn write_batch(&mut self, batch: &[Job]) -> io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let mut out = String::new();
        let mut prev = self.prev.clone();
        let mut durable = false;
        let mut count = 0u64;
        for job in batch {
            if let Job::Lines(entries, _, d) = job {
                durable |= *d;
                count += entries.len() as u64;
                for entry in entries {
                    let (line, hash) = chain::chain_line(&self.key, &prev, entry);
                    prev = hash;
                    out.push_str(&line);
                    out.push('\n');
                }
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("audit file not open"))?;
        let sync_now = durable || self.unsynced + out.len() > SYNC_BACKLOG;
        let res = file
            .write_all(out.as_bytes())
            .and_then(|()| if sync_now { sync(file) } else { Ok(()) });
        match res {
            Ok(()) => {
                self.unsynced = if sync_now { 0 } else { self.unsynced + out.len() };
                let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
                chain.head = Some(prev.clone());
                chain.lines += count;
                self.prev = prev;
                Ok(())
            }
            Err(e) => {
                // A partial write may have happened: reopen next time and continue the chain from what is on disk.
                self.file = None;
                Err(e)
            }
        }
    }

    /// Open for append; a new (or non-regular) file starts with a genesis record, an existing log continues its chain.
    fn open(&mut self) -> io::Result<()> {
        // A FIFO or device is opened write-only (opening a FIFO read-write would make us its reader).
        let special = std::fs::metadata(&self.path).is_ok_and(|m| !m.is_file());
        let mut opts = OpenOptions::new();
        opts.append(true);
        if !special {
            opts.create(true).read(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        }
        let mut file = opts.open(&self.path)?;
        let meta = file.metadata()?;
        let last = if meta.is_file() && meta.len() > 0 {
            last_line(&mut file, meta.len())?
        } else {
            None
        };
        let mut state = ChainState::default();
        match last {
            Some((line, complete)) => {
                if !complete {
                    file.write_all(b"\n")?;
                }
                // A damaged last line still anchors the chain (verify reports it); its claimed hash is the best link.
                self.prev = chain::own_hash(&self.key, &line)
                    .ok()
                    .or_else(|| chain::claimed_hash(&line).map(|(h, _)| h.to_string()))
                    .unwrap_or_else(|| self.key.digest(&line));
                let (genesis, lines) = scan(&self.path, &self.key)?;
                if genesis.is_none() {
                    tracing::warn!(
                        device = %self.device,
                        path = %self.path.display(),
                        "the audit file does not start with a genesis record that verifies under this server's \
                         chain key (written before keyed chains, by another server, or edited): `leakstop audit \
                         verify` will report it broken; move it aside to start a fresh log"
                    );
                }
                state.genesis = genesis;
                state.lines = lines;
            }
            None => {
                let now = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let nonce: [u8; 16] = rand::random();
                let (genesis, hash) = chain::genesis_line(&self.key, &self.device, &now, &hex::encode(nonce));
                file.write_all(format!("{genesis}\n").as_bytes())?;
                sync(&file)?;
                self.prev = hash.clone();
                state.genesis = Some(hash);
                state.lines = 1;
            }
        }
        state.head = Some(self.prev.clone());
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.file = Some(file);
        Ok(())
    }
}

/// The verified hash of a log's first line and its number of lines (read once, when a device reopens its file).
fn scan(path: &Path, key: &ChainKey) -> io::Result<(Option<String>, u64)> {
    use std::io::BufRead;
    let mut r = io::BufReader::with_capacity(256 << 10, File::open(path)?);
    let mut first = Vec::new();
    r.read_until(b'\n', &mut first)?;
    let genesis = chain::own_hash(key, first.strip_suffix(b"\n").unwrap_or(&first)).ok();
    let mut lines = u64::from(first.last() == Some(&b'\n'));
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        let n = buf.len();
        r.consume(n);
    }
    Ok((genesis, lines))
}

fn sync(file: &File) -> io::Result<()> {
    match file.sync_data() {
        // FIFOs and character devices cannot be synced; the write itself is what counts there.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

/// The last line of a regular file (without its newline) and whether it was complete.
fn last_line(file: &mut File, len: u64) -> io::Result<Option<(Vec<u8>, bool)>> {
    let mut back = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(back);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        let complete = tail.last() == Some(&b'\n');
        let body = if complete {
            tail.strip_suffix(b"\n").unwrap_or(&tail)
        } else {
            &tail[..]
        };
        match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => return Ok(Some((body.get(i + 1..).unwrap_or_default().to_vec(), complete))),
            None if start == 0 => return Ok(Some((body.to_vec(), complete))),
            None => back *= 4,
        }
    }
}

/// A fresh directory for a unit test (the crate has no tempfile dependency).
#[cfg(test)]
pub(crate) fn test_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "leakstop-audit-test-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(2);

    fn key() -> ChainKey {
        ChainKey::derive(&super::super::HmacKey::new(b"k".to_vec()))
    }

    #[tokio::test]
    async fn lines_are_chained_and_a_reopened_file_continues_the_chain() {
        let dir = super::super::device::test_dir();
        let path = dir.join("audit.log");
        {
            let dev = FileDevice::open("file", &path, key(), D).await.unwrap();
            let waits: Vec<_> = (0..50)
                .map(|i| dev.submit(vec![format!("{{\"n\":{i}}}")], true).unwrap())
                .collect();
            for w in waits {
                w.wait(D).await.unwrap();
            }
        }
        let dev = FileDevice::open("file", &path, key(), D).await.unwrap();
        dev.submit(vec!["{\"n\":\"after restart\"}".into()], true)
            .unwrap()
            .wait(D)
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 52);
        let state = dev.chain_state();
        assert_eq!(state.lines, 52);
        let pins = chain::Pins {
            genesis: state.genesis.as_deref(),
            head: state.head.as_deref(),
        };
        assert!(pins.genesis.is_some() && pins.head.is_some());
        let v = chain::verify(&key(), text.as_bytes(), pins).unwrap();
        assert!(matches!(v, chain::Verdict::Intact { lines: 52, .. }), "{v:?}");
    }

    #[tokio::test]
    async fn a_full_disk_is_an_error_not_a_hang() {
        let dev = FileDevice::open("full", Path::new("/dev/full"), key(), D).await;
        let err = match dev {
            Err(e) => e,
            Ok(dev) => dev.submit(vec!["{}".into()], true).unwrap().wait(D).await.unwrap_err(),
        };
        assert!(matches!(err, DeviceError::Io { .. }), "{err}");
        assert!(err.to_string().contains("/dev/full"), "{err}");
    }
}
