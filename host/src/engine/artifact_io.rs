//! The runtime's artifact I/O backed by the content-addressed artifact store.
//!
//! Large artifacts are read ahead and written behind on helper threads, which also compute the
//! SHA-256, so hashing and file I/O overlap with the component's own work. Channels between the
//! threads hold at most [`QUEUED_CHUNKS`] chunks, which bounds the extra memory per artifact.

use crate::runtime::{ArtifactIo, ArtifactRef, OutputSink};
use crate::store::artifacts::{ArtifactStore, ArtifactWriter};
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Chunk size of the helper threads.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks queued between a helper thread and the call, so at most 4 MiB in flight per artifact.
const QUEUED_CHUNKS: usize = 4;

/// Inputs up to this size are read on the calling thread: a helper thread costs more than it
/// saves for them.
const READ_AHEAD_MIN_BYTES: u64 = 4 << 20;

/// Reads inputs from and writes outputs to an [`ArtifactStore`].
#[derive(Debug, Clone)]
pub struct StoreArtifactIo {
    store: ArtifactStore,
}

impl StoreArtifactIo {
    /// Wraps the store.
    pub fn new(store: ArtifactStore) -> Self {
        Self { store }
    }
}

impl ArtifactIo for StoreArtifactIo {
    fn open_input(&mut self, artifact: &ArtifactRef) -> io::Result<Box<dyn Read + Send>> {
        let reader = self
            .store
            .open_reader(&artifact.digest)
            .map_err(io::Error::other)?;
        if artifact.size < READ_AHEAD_MIN_BYTES {
            return Ok(Box::new(reader));
        }
        Ok(Box::new(ReadAhead::spawn(reader)?))
    }

    fn create_output(&mut self, _name: &str, _media_type: &str) -> io::Result<Box<dyn OutputSink>> {
        let writer = self.store.create_writer().map_err(io::Error::other)?;
        Ok(Box::new(WriteBehind::new(writer)))
    }
}

/// Reads a stored artifact on a helper thread, one chunk ahead of the consumer.
struct ReadAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    offset: usize,
    done: bool,
}

impl ReadAhead {
    fn spawn(mut reader: impl Read + Send + 'static) -> io::Result<Self> {
        let (sender, chunks) = sync_channel(QUEUED_CHUNKS);
        std::thread::Builder::new()
            .name("runledger-read-ahead".into())
            .spawn(move || {
                loop {
                    let mut chunk = vec![0; CHUNK_BYTES];
                    let result = fill(&mut reader, &mut chunk).map(|filled| {
                        chunk.truncate(filled);
                        chunk
                    });
                    let last = !matches!(&result, Ok(chunk) if !chunk.is_empty());
                    if sender.send(result).is_err() || last {
                        return;
                    }
                }
            })?;
        Ok(Self {
            chunks,
            current: Vec::new(),
            offset: 0,
            done: false,
        })
    }
}

fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.offset == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) if chunk.is_empty() => {
                    self.done = true;
                    return Ok(0);
                }
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(io::Error::other("read-ahead thread stopped")),
            }
        }
        let count = (self.current.len() - self.offset).min(buf.len());
        buf[..count].copy_from_slice(&self.current[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

/// Writes an artifact on a helper thread once it outgrows one chunk; small outputs never start
/// the thread.
struct WriteBehind {
    state: WriteState,
}

enum WriteState {
    Inline(ArtifactWriter),
    Threaded {
        chunks: SyncSender<Vec<u8>>,
        worker: JoinHandle<io::Result<ArtifactWriter>>,
    },
    Broken,
}

impl WriteBehind {
    fn new(writer: ArtifactWriter) -> Self {
        Self {
            state: WriteState::Inline(writer),
        }
    }

    fn start_thread(writer: ArtifactWriter) -> io::Result<WriteState> {
        let (chunks, receiver) = sync_channel::<Vec<u8>>(QUEUED_CHUNKS);
        let worker = std::thread::Builder::new()
            .name("runledger-write-behind".into())
            .spawn(move || {
                let mut writer = writer;
                for chunk in receiver {
                    writer.write_all(&chunk)?;
                }
                Ok(writer)
            })?;
        Ok(WriteState::Threaded { chunks, worker })
    }

    fn worker_error(worker: JoinHandle<io::Result<ArtifactWriter>>) -> io::Error {
        match worker.join() {
            Ok(Err(error)) => error,
            _ => io::Error::other("write-behind thread stopped"),
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let WriteState::Inline(writer) = &mut self.state {
            if writer.size() + (buf.len() as u64) <= CHUNK_BYTES as u64 {
                return writer.write(buf);
            }
            let WriteState::Inline(writer) = std::mem::replace(&mut self.state, WriteState::Broken)
            else {
                unreachable!("matched above");
            };
            self.state = Self::start_thread(writer)?;
        }
        match std::mem::replace(&mut self.state, WriteState::Broken) {
            WriteState::Threaded { chunks, worker } => match chunks.send(buf.to_vec()) {
                Ok(()) => {
                    self.state = WriteState::Threaded { chunks, worker };
                    Ok(buf.len())
                }
                Err(_) => Err(Self::worker_error(worker)),
            },
            _ => Err(io::Error::other("artifact writer failed earlier")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputSink for WriteBehind {
    fn commit(self: Box<Self>) -> io::Result<(String, u64)> {
        let writer = match self.state {
            WriteState::Inline(writer) => writer,
            WriteState::Threaded { chunks, worker } => {
                drop(chunks);
                worker
                    .join()
                    .map_err(|_| io::Error::other("write-behind thread panicked"))??
            }
            WriteState::Broken => return Err(io::Error::other("artifact writer failed earlier")),
        };
        writer.commit().map_err(io::Error::other)
    }
}
