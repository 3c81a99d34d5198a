//! Loading and saving an identity's key file (the only file I/O in this crate).
//!
//! Format: one line `ruang-identity-v1 <base32 secret>`; mode 0600 on Unix. A file that others
//! can read is refused, as ssh does, because whoever reads it can speak and moderate as you.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;

use crate::identity::{Identity, SECRET_LEN};
use crate::ticket::BASE32_LOWER;

const HEADER: &str = "ruang-identity-v1";

/// Why a key file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file or its folder could not be read or written.
    #[error("cannot access key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but does not hold a ruang identity.
    #[error("{path} is not a ruang identity file (expected a line starting with `{HEADER}`)")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// Group or others may read the file.
    #[error("key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Loads the identity at `path`, or creates one (and its folder) if the file does not exist.
///
/// Returns the identity and whether it was created now.
pub fn load_or_create<R: CryptoRng + ?Sized>(
    path: &Path,
    rng: &mut R,
) -> Result<(Identity, bool), KeyFileError> {
    match fs::metadata(path) {
        Ok(_) => Ok((load(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate(rng);
            save(path, &identity)?;
            Ok((identity, true))
        }
        Err(source) => Err(KeyFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the identity stored at `path`.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    check_permissions(path)?;
    let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io)?);
    let malformed = || KeyFileError::Malformed {
        path: path.to_owned(),
    };
    let body = text
        .trim()
        .strip_prefix(HEADER)
        .ok_or_else(malformed)?
        .trim();
    let bytes = zeroize::Zeroizing::new(
        BASE32_LOWER
            .decode(body.to_ascii_lowercase().as_bytes())
            .map_err(|_| malformed())?,
    );
    let secret: &[u8; SECRET_LEN] = bytes.as_slice().try_into().map_err(|_| malformed())?;
    Ok(Identity::from_secret_bytes(secret))
}

/// Writes `identity` to `path` with mode 0600, creating parent folders; replaces atomically.
pub fn save(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    let line = zeroize::Zeroizing::new(format!(
        "{HEADER} {}\n",
        BASE32_LOWER.encode(&identity.secret_bytes()[..])
    ));
    file.write_all(line.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::InsecurePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn creates_then_loads_the_same_identity_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (a, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(created);
        let (b, created) = load_or_create(&path, &mut rng).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn garbage_is_reported_not_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        save(
            &path,
            &Identity::generate(&mut ChaCha20Rng::seed_from_u64(8)),
        )
        .unwrap();
        fs::write(&path, "hello").unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Malformed { .. })));
        fs::write(&path, format!("{HEADER} abc")).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Malformed { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        save(
            &path,
            &Identity::generate(&mut ChaCha20Rng::seed_from_u64(9)),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load(&path),
            Err(KeyFileError::InsecurePermissions { .. })
        ));
    }
}
