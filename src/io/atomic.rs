//! Atomic file writes: write a temporary file beside the target, flush it to
//! disk, then rename it over the target. A reader (or a run killed at any
//! moment) sees either the old complete file or the new complete file, never
//! a partial one.
//!
//! Targets that are not regular files are respected: a symbolic link is
//! followed (the file it points to is replaced, the link stays), and a device,
//! FIFO or socket (`--out /dev/null`, `--out /dev/stdout`, a named pipe) is
//! written in place, since renaming over it would replace the special file
//! with a regular one (as root, `/dev/null` itself).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The temporary path used while writing `path`: same directory, so that the
/// final `rename` stays on one file system and is atomic.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory
/// fsync). Creates the parent directory if needed. On error the target is
/// untouched and the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], but the content is produced by `fill`, which writes
/// into the temporary file (useful for large outputs streamed in pieces).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    // Follow a symbolic link to the file it names (a dangling link is
    // replaced by a regular file, as `rename` would do).
    let resolved;
    let path = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => {
                resolved = target;
                resolved.as_path()
            }
            Err(_) => path,
        },
        _ => path,
    };
    if let Ok(m) = fs::metadata(path) {
        if m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            ));
        }
        if !m.is_file() {
            // A device, FIFO or socket: write in place, never rename over it.
            let mut f = fs::OpenOptions::new().write(true).open(path)?;
            fill(&mut f)?;
            return f.flush();
        }
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_path_for(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform allows
            // opening a directory, so a failure here is not an error.
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = std::env::temp_dir().join(format!("mofo-atomic-{}", std::process::id()));
        let p = dir.join("sub").join("x.txt");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!temp_path_for(&p).exists());
        let failed = write_atomic_with(&p, |_| Err(io::Error::other("boom")));
        assert!(failed.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!temp_path_for(&p).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn special_files_and_links_are_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = std::env::temp_dir().join(format!("mofo-atomic-special-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // A symbolic link: the file it points to gets the content, the link stays.
        let target = dir.join("target.txt");
        fs::write(&target, b"old").unwrap();
        let link = dir.join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        // A named pipe: written in place (read by another thread), still a pipe.
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || fs::read(&fifo).unwrap())
            };
            write_atomic(&fifo, b"through the pipe").unwrap();
            assert_eq!(reader.join().unwrap(), b"through the pipe");
            assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        } else {
            eprintln!("mkfifo not available: named-pipe case not checked");
        }
        // A directory is an error, not replaced.
        assert!(write_atomic(&dir, b"x").is_err());
        assert!(dir.is_dir());
        fs::remove_dir_all(&dir).unwrap();
    }
}
