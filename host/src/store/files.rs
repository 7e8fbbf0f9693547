//! File modes of the database: it holds every customer message, so only its owner may read it.

use std::path::Path;

use super::StoreError;

/// Creates the database file readable and writable by its owner only (mode 0600), or tightens
/// an existing one and the write-ahead log and shared-memory files beside it. SQLite gives
/// the files it creates later the mode of the database file.
pub(super) fn make_private(database: &Path) -> Result<(), StoreError> {
    let io = |what: &Path, e: std::io::Error| {
        StoreError::Io(format!(
            "securing the database file {}: {e}",
            what.display()
        ))
    };
    if !database.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        options.open(database).map_err(|e| io(database, e))?;
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = database.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            let Ok(metadata) = std::fs::metadata(file) else {
                continue;
            };
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io(file, e))?;
                tracing::warn!(file = %file.display(), was = format!("{mode:o}"), "database file was readable by others; now 0600");
            }
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_new_database_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("new.db");
        make_private(&db).expect("create");
        assert_eq!(mode(&db), 0o600);
    }

    #[test]
    fn an_open_database_and_its_log_are_made_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("old.db");
        let wal = dir.path().join("old.db-wal");
        for file in [&db, &wal] {
            std::fs::write(file, b"").expect("write");
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        make_private(&db).expect("secure");
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
    }
}
