//! A file as a resource: opened once per compute, read with positioned reads.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use brisk_graph::{BoxError, Resource};

/// A file that chunk tasks read with positioned reads from one shared handle.
///
/// Bind the lazy values that read it with `requiring(file.clone())`: a compute then opens it
/// once (if it is closed) before the first read and closes it after the last, and leaves it
/// open if it was open. Reads while it is closed fail with an error saying so — never a
/// silent reopen.
///
/// ```
/// use std::sync::Arc;
/// use brisk_graph::{Resource, TaskSpec};
/// use brisk_guard::FileResource;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("data.bin");
/// std::fs::write(&path, [1u8, 2, 3, 4])?;
/// let file = FileResource::new(&path);
/// let f = Arc::clone(&file);
/// let byte = TaskSpec::new("byte")
///     .try_call(move |at: u64| f.read_exact_at(at, 1).map(|b| b[0]), (2u64,))
///     .requiring(file.clone());
/// assert_eq!(byte.compute_with(&brisk_exec::SequentialExecutor)?, 3);
/// assert_eq!((file.opens(), file.closes(), file.is_open()), (1, 1, false));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FileResource {
    path: PathBuf,
    file: RwLock<Option<Arc<File>>>,
    opens: AtomicU64,
    closes: AtomicU64,
    reads: AtomicU64,
}

impl FileResource {
    /// A closed file resource for `path` (nothing is opened here).
    #[must_use]
    pub fn new(path: impl AsRef<Path>) -> Arc<Self> {
        Arc::new(Self {
            path: path.as_ref().to_path_buf(),
            file: RwLock::new(None),
            opens: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
        })
    }

    /// The path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times it was opened.
    #[must_use]
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// How many times it was closed.
    #[must_use]
    pub fn closes(&self) -> u64 {
        self.closes.load(Ordering::Relaxed)
    }

    /// How many reads were made.
    #[must_use]
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The open handle, or an error naming the file if it is closed.
    ///
    /// # Errors
    /// `io::ErrorKind::NotConnected` when the resource is closed.
    pub fn handle(&self) -> io::Result<Arc<File>> {
        self.file
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "resource `{}` is closed (bind the value with `requiring`, or open it)",
                        self.path.display()
                    ),
                )
            })
    }

    /// Reads `len` bytes at `offset` from the open handle (many threads at once).
    ///
    /// # Errors
    /// The file is closed, or the read failed (naming the file, offset and length).
    pub fn read_exact_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = self.handle()?;
        let mut buf = vec![0u8; len];
        read_at(&f, offset, &mut buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "reading {len} bytes at {offset} of `{}`: {e}",
                    self.path.display()
                ),
            )
        })?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(buf)
    }
}

#[cfg(unix)]
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_at(f: &File, mut offset: u64, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(f, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Resource for FileResource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn open(&self) -> Result<(), BoxError> {
        let f = File::open(&self.path)
            .map_err(|e| format!("opening `{}`: {e}", self.path.display()))?;
        *self.file.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(f));
        self.opens.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn close(&self) -> Result<(), BoxError> {
        // The handle closes when the last in-flight read drops its clone.
        self.file
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.closes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn is_open(&self) -> bool {
        self.file
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}
