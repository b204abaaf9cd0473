//! Keys of tenants and witnesses. The formats, parsing, signing and verification are
//! akte-verify's ([`akte_verify::keys`], re-exported here unchanged), since an archive
//! checks signatures with them offline; writing key files durably is the agency's side and
//! stays here, with the data directory's file operations ([`KeyFile`]).

use std::path::Path;

pub use akte_verify::keys::*;

use crate::embedded::fsutil::write_file_atomic;

/// Writing a key to a file: atomically (a temporary file, flushed, renamed, the directory
/// flushed), with the mode the key's kind needs.
pub trait KeyFile {
    /// Writes the key file at `path`, replacing one that is there.
    fn save(&self, path: &Path) -> Result<(), KeyError>;
}

impl KeyFile for SigningKeyPair {
    /// The private key string and a newline, mode 0600; the buffer is wiped afterwards.
    fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut bytes = self.to_file_bytes();
        let result = write_file_atomic(path, &bytes, PRIVATE_KEY_MODE);
        wipe(&mut bytes);
        result.map_err(io_failure)
    }
}

impl KeyFile for VerifierKey {
    /// The verifier key string and a newline, mode 0644.
    fn save(&self, path: &Path) -> Result<(), KeyError> {
        let line = format!("{self}\n");
        write_file_atomic(path, line.as_bytes(), PUBLIC_KEY_MODE).map_err(io_failure)
    }
}

fn io_failure(e: crate::backend::IoFailure) -> KeyError {
    KeyError::Io {
        op: e.op,
        path: e.target,
        source: e.source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn key_files_are_written_with_their_modes_and_load_again() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("tenant.key");
        let pair = SigningKeyPair::generate("akte.example/t1").unwrap();
        pair.save(&private).unwrap();
        assert_eq!(mode_of(&private), 0o600);
        let text = fs::read_to_string(&private).unwrap();
        assert!(text.starts_with("PRIVATE+KEY+akte.example/t1+"), "{text}");
        assert_eq!(text.matches('\n').count(), 1);
        assert_eq!(
            SigningKeyPair::load(&private).unwrap().sign(b"x"),
            pair.sign(b"x")
        );
        // Saving again replaces the file.
        let other = SigningKeyPair::generate("akte.example/t1").unwrap();
        other.save(&private).unwrap();
        assert_eq!(
            SigningKeyPair::load(&private).unwrap().verifier(),
            other.verifier()
        );

        let public = dir.path().join("tenant.pub");
        pair.verifier().save(&public).unwrap();
        assert_eq!(mode_of(&public), 0o644);
        assert_eq!(
            fs::read_to_string(&public).unwrap(),
            format!("{}\n", pair.verifier())
        );
        assert_eq!(VerifierKey::load(&public).unwrap(), pair.verifier());
    }

    #[test]
    fn a_key_file_in_a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let pair = SigningKeyPair::generate("t").unwrap();
        let err = pair.save(&dir.path().join("no/such/dir/k")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err:?}");
    }
}
