//! The runtime's artifact I/O backed by the content-addressed artifact store.
//!
//! Large artifacts are read ahead and written behind on helper threads, which also compute the
//! SHA-256, so hashing and file I/O overlap with the component's own work. Channels between the
//! threads hold at most [`QUEUED_CHUNKS`] chunks, which bounds the extra memory per artifact.

use crate::runtime::{ArtifactIo, ArtifactRef, InputSource, OutputSink, ReadSource};
use crate::store::artifacts::{ArtifactStore, ArtifactWriter};
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Chunk size of the helper threads.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks queued between a helper thread and the call: at most 16 MiB in flight per artifact,
/// enough to ride out a disk flush without stalling the component.
const QUEUED_CHUNKS: usize = 16;

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
    fn open_input(&mut self, artifact: &ArtifactRef) -> io::Result<Box<dyn InputSource>> {
        let reader = self
            .store
            .open_reader(&artifact.digest)
            .map_err(io::Error::other)?;
        if artifact.size < READ_AHEAD_MIN_BYTES {
            return Ok(Box::new(ReadSource(reader)));
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

impl InputSource for ReadAhead {
    /// Hands over the next read-ahead chunk whole when it fits, so large reads copy nothing.
    fn read_chunk(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.offset == self.current.len() {
            if self.done {
                return Ok(Vec::new());
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    if chunk.len() <= max {
                        return Ok(chunk);
                    }
                    self.current = chunk;
                    self.offset = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(io::Error::other("read-ahead thread stopped")),
            }
        }
        let count = (self.current.len() - self.offset).min(max);
        let chunk = self.current[self.offset..self.offset + count].to_vec();
        self.offset += count;
        Ok(chunk)
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

impl WriteBehind {
    fn start_if_inline(&mut self) -> io::Result<()> {
        if matches!(self.state, WriteState::Inline(_)) {
            let WriteState::Inline(writer) = std::mem::replace(&mut self.state, WriteState::Broken)
            else {
                unreachable!("checked above");
            };
            self.state = Self::start_thread(writer)?;
        }
        Ok(())
    }

    fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        match std::mem::replace(&mut self.state, WriteState::Broken) {
            WriteState::Threaded { chunks, worker } => match chunks.send(chunk) {
                Ok(()) => {
                    self.state = WriteState::Threaded { chunks, worker };
                    Ok(())
                }
                Err(_) => Err(Self::worker_error(worker)),
            },
            _ => Err(io::Error::other("artifact writer failed earlier")),
        }
    }
}

impl Drop for WriteBehind {
    /// Waits for the helper thread, so an abandoned output's temporary file is gone when the
    /// sink is.
    fn drop(&mut self) {
        if let WriteState::Threaded { chunks, worker } =
            std::mem::replace(&mut self.state, WriteState::Broken)
        {
            drop(chunks);
            let _ = worker.join();
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf.to_vec())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutputSink for WriteBehind {
    fn write_chunk(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        if let WriteState::Inline(writer) = &mut self.state
            && writer.size() + (chunk.len() as u64) <= CHUNK_BYTES as u64
        {
            return writer.write_all(&chunk);
        }
        self.start_if_inline()?;
        self.send(chunk)
    }

    fn commit(mut self: Box<Self>) -> io::Result<(String, u64)> {
        let writer = match std::mem::replace(&mut self.state, WriteState::Broken) {
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
