//! Content-addressed artifact store on the local filesystem.
//!
//! Each artifact is a file named by the lowercase hex SHA-256 of its content, under a two-level
//! fan-out (`ab/cdef...`) so no directory grows past a few thousand entries. Content is written to
//! a temporary file in the same directory tree and renamed into place once its digest is known,
//! so a reader never sees a partial artifact and the same content is stored once.

use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Errors of the artifact store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The digest is not 64 lowercase hex characters.
    #[error("invalid artifact digest `{0}`: expected 64 lowercase hex characters (SHA-256)")]
    InvalidDigest(String),
    /// No artifact with this digest is stored.
    #[error("artifact {0} not found in the artifact store")]
    NotFound(String),
    /// Stored content no longer hashes to its digest.
    #[error("artifact {digest} is corrupt: its content hashes to {actual}")]
    Corrupt {
        /// The digest the artifact is stored under.
        digest: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// Content written under an expected digest hashed to another one.
    #[error("content hashes to {actual}, not the expected {expected}")]
    DigestMismatch {
        /// The digest the writer announced.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// The filesystem failed.
    #[error("artifact store i/o failed at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Checks that `digest` is a lowercase hex SHA-256.
pub fn validate_digest(digest: &str) -> Result<(), ArtifactError> {
    let valid = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ArtifactError::InvalidDigest(digest.to_owned()))
    }
}

/// Files under a root directory, addressed by SHA-256.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// Opens (and creates if needed) the store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let root = root.into();
        fs::create_dir_all(root.join("tmp")).map_err(|source| ArtifactError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The directory the store keeps its files in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of the file holding `digest`.
    pub fn path_of(&self, digest: &str) -> Result<PathBuf, ArtifactError> {
        validate_digest(digest)?;
        Ok(self.root.join(&digest[..2]).join(&digest[2..]))
    }

    /// Whether an artifact with this digest is stored.
    pub fn contains(&self, digest: &str) -> bool {
        self.path_of(digest).is_ok_and(|path| path.is_file())
    }

    /// Size in bytes of a stored artifact.
    pub fn size_of(&self, digest: &str) -> Result<u64, ArtifactError> {
        let path = self.path_of(digest)?;
        match fs::metadata(&path) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ArtifactError::NotFound(digest.to_owned()))
            }
            Err(source) => Err(ArtifactError::Io { path, source }),
        }
    }

    /// Opens a stored artifact for reading. The reader verifies the digest when it reaches the
    /// end and fails that last read if the content changed.
    pub fn open_reader(&self, digest: &str) -> Result<VerifyingReader, ArtifactError> {
        let path = self.path_of(digest)?;
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(digest.to_owned()));
            }
            Err(source) => return Err(ArtifactError::Io { path, source }),
        };
        Ok(VerifyingReader {
            file,
            hasher: Sha256::new(),
            expected: digest.to_owned(),
            verified: false,
        })
    }

    /// Starts writing a new artifact.
    pub fn create_writer(&self) -> Result<ArtifactWriter, ArtifactError> {
        let tmp_dir = self.root.join("tmp");
        let file =
            tempfile::NamedTempFile::new_in(&tmp_dir).map_err(|source| ArtifactError::Io {
                path: tmp_dir,
                source,
            })?;
        Ok(ArtifactWriter {
            store: self.clone(),
            file,
            hasher: Sha256::new(),
            size: 0,
            synced: 0,
        })
    }

    /// Copies a file into the store and returns its digest and size.
    pub fn import_file(&self, path: &Path) -> Result<(String, u64), ArtifactError> {
        let mut source = File::open(path).map_err(|source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut writer = self.create_writer()?;
        io::copy(&mut source, &mut writer).map_err(|source| ArtifactError::Io {
            path: path.to_owned(),
            source,
        })?;
        writer.commit()
    }

    /// Stores `bytes` and returns their digest and size.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(String, u64), ArtifactError> {
        let mut writer = self.create_writer()?;
        writer
            .write_all(bytes)
            .map_err(|source| ArtifactError::Io {
                path: self.root.clone(),
                source,
            })?;
        writer.commit()
    }

    /// Checks that the stored file of `digest` exists and still hashes to it.
    pub fn verify(&self, digest: &str) -> Result<StoredState, ArtifactError> {
        let mut reader = match self.open_reader(digest) {
            Ok(reader) => reader,
            Err(ArtifactError::NotFound(_)) => return Ok(StoredState::Missing),
            Err(error) => return Err(error),
        };
        match io::copy(&mut reader, &mut io::sink()) {
            Ok(_) => Ok(StoredState::Intact),
            Err(error) => match self.read_error(digest, error) {
                ArtifactError::Corrupt { actual, .. } => Ok(StoredState::Corrupt { actual }),
                other => Err(other),
            },
        }
    }

    /// Deletes temporary files older than `age`, left by writers whose process died. Writers
    /// touch their file as they write, so a file untouched that long has no writer.
    pub fn remove_stale_temporary_files(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .is_ok_and(|modified| modified.elapsed().is_ok_and(|elapsed| elapsed > age));
            if stale && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Reads a whole artifact into memory, verifying its digest.
    pub fn read_to_vec(&self, digest: &str) -> Result<Vec<u8>, ArtifactError> {
        let mut reader = self.open_reader(digest)?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|source| self.read_error(digest, source))?;
        Ok(bytes)
    }

    fn read_error(&self, digest: &str, source: io::Error) -> ArtifactError {
        match source
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<CorruptContent>())
        {
            Some(corrupt) => ArtifactError::Corrupt {
                digest: digest.to_owned(),
                actual: corrupt.actual.clone(),
            },
            None => ArtifactError::Io {
                path: self.path_of(digest).unwrap_or_default(),
                source,
            },
        }
    }
}

/// What [`ArtifactStore::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredState {
    /// The file exists and hashes to its digest.
    Intact,
    /// No file is stored under the digest.
    Missing,
    /// The file hashes to another digest.
    Corrupt {
        /// The digest of the bytes on disk.
        actual: String,
    },
}

/// The error a [`VerifyingReader`] returns when content does not match its digest.
#[derive(Debug, thiserror::Error)]
#[error("artifact {expected} is corrupt: its content hashes to {actual}")]
pub struct CorruptContent {
    /// The digest the artifact is stored under.
    pub expected: String,
    /// The digest of the bytes read.
    pub actual: String,
}

/// Reads a stored artifact and checks its SHA-256 at the end.
#[derive(Debug)]
pub struct VerifyingReader {
    file: File,
    hasher: Sha256,
    expected: String,
    verified: bool,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.file.read(buf)?;
        if count > 0 {
            self.hasher.update(&buf[..count]);
            return Ok(count);
        }
        if !buf.is_empty() && !self.verified {
            let actual = hex::encode(self.hasher.clone().finalize());
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    CorruptContent {
                        expected: self.expected.clone(),
                        actual,
                    },
                ));
            }
            self.verified = true;
        }
        Ok(0)
    }
}

/// Bytes after which a writer has the kernel start writing what it has written to disk.
/// Starting write-back as it goes spreads the disk writes over the whole artifact, so the
/// `fsync` at commit has little left to wait for.
const SYNC_INTERVAL_BYTES: u64 = 64 << 20;

/// Writes a new artifact; [`ArtifactWriter::commit`] moves it into place under its digest.
/// Dropping the writer without committing deletes the partial file.
#[derive(Debug)]
pub struct ArtifactWriter {
    store: ArtifactStore,
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    synced: u64,
}

impl ArtifactWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the artifact and returns its digest and size.
    pub fn commit(self) -> Result<(String, u64), ArtifactError> {
        let digest = hex::encode(self.hasher.finalize());
        self.store.persist(self.file, &digest)?;
        Ok((digest, self.size))
    }

    /// Finishes the artifact, failing and storing nothing if its digest is not `expected`.
    pub fn commit_expecting(self, expected: &str) -> Result<(String, u64), ArtifactError> {
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != expected {
            return Err(ArtifactError::DigestMismatch {
                expected: expected.to_owned(),
                actual,
            });
        }
        self.commit()
    }
}

impl ArtifactStore {
    fn persist(&self, file: tempfile::NamedTempFile, digest: &str) -> Result<(), ArtifactError> {
        // An intact existing copy is kept, which saves a flush to disk. A damaged one is
        // replaced by the new bytes, which were just hashed to `digest`.
        let path = self.path_of(digest)?;
        if path.is_file() && self.verify(digest)? == StoredState::Intact {
            return Ok(());
        }
        let io_error = |source| ArtifactError::Io {
            path: path.clone(),
            source,
        };
        file.as_file().sync_all().map_err(io_error)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        file.persist(&path).map_err(|e| io_error(e.error))?;
        Ok(())
    }
}

impl Write for ArtifactWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let count = self.file.write(buf)?;
        self.hasher.update(&buf[..count]);
        self.size += count as u64;
        if self.size - self.synced >= SYNC_INTERVAL_BYTES {
            start_write_back(self.file.as_file(), self.synced, self.size - self.synced)?;
            self.synced = self.size;
        }
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Starts write-back of a byte range without waiting for it (Linux `sync_file_range`).
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "sync_file_range has no safe wrapper in std; it only reads the descriptor"
)]
fn start_write_back(file: &File, offset: u64, length: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(length)) = (i64::try_from(offset), i64::try_from(length)) else {
        return Ok(());
    };
    // SAFETY: the descriptor is open for the lifetime of `file`, and the call reads no memory.
    let result = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            length,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Elsewhere the `fsync` at commit does all the flushing.
#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &File, _offset: u64, _length: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_content_once_under_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();

        let (first, size) = store.put_bytes(b"hello").unwrap();
        let (second, _) = store.put_bytes(b"hello").unwrap();

        assert_eq!(first, second);
        assert_eq!(size, 5);
        assert_eq!(
            first,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(store.read_to_vec(&first).unwrap(), b"hello");
    }

    #[test]
    fn read_detects_corrupted_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let (digest, _) = store.put_bytes(b"original").unwrap();
        fs::write(store.path_of(&digest).unwrap(), b"tampered").unwrap();

        let error = store.read_to_vec(&digest).unwrap_err();

        assert!(matches!(error, ArtifactError::Corrupt { .. }), "{error}");
    }

    #[test]
    fn rewriting_content_repairs_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let (digest, _) = store.put_bytes(b"original").unwrap();
        fs::write(store.path_of(&digest).unwrap(), b"tampered").unwrap();
        assert!(matches!(
            store.verify(&digest).unwrap(),
            StoredState::Corrupt { .. }
        ));

        store.put_bytes(b"original").unwrap();

        assert_eq!(store.verify(&digest).unwrap(), StoredState::Intact);
        assert_eq!(store.read_to_vec(&digest).unwrap(), b"original");
    }

    #[test]
    fn verify_reports_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();

        let state = store.verify(&"a".repeat(64)).unwrap();

        assert_eq!(state, StoredState::Missing);
    }

    #[test]
    fn rejects_malformed_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();

        let error = store.open_reader("../etc/passwd").unwrap_err();

        assert!(matches!(error, ArtifactError::InvalidDigest(_)), "{error}");
    }

    #[test]
    fn commit_expecting_rejects_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut writer = store.create_writer().unwrap();
        writer.write_all(b"payload").unwrap();

        let error = writer.commit_expecting(&"0".repeat(64)).unwrap_err();

        assert!(matches!(error, ArtifactError::DigestMismatch { .. }));
        assert!(!store.contains(&"0".repeat(64)));
    }
}
