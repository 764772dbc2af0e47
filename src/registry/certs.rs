//! Extra CA roots per registry, as containers-certs.d(5) and Docker keep
//! them: `DIR/HOST[:PORT]/*.crt` (PEM, one or more certificates each).
//! Client certificates (`*.cert` + `*.key`) are not supported: the token
//! negotiation goes through oci-client, which cannot present one; they
//! are reported and ignored.

use std::path::{Path, PathBuf};

use super::RegistryOptions;
use crate::{Error, Result};

/// The PEM roots to trust for `host` (`host` or `host:port`), in addition
/// to the system's: from `opts.cert_dir` if given, else from each
/// `opts.certs_d` directory's `host` subdirectory.
pub fn roots_for(host: &str, opts: &RegistryOptions) -> Result<Vec<Vec<u8>>> {
    let dirs: Vec<PathBuf> = match &opts.cert_dir {
        Some(dir) => vec![dir.clone()],
        None => opts.certs_d.iter().map(|d| d.join(host)).collect(),
    };
    let mut roots = Vec::new();
    for dir in dirs {
        roots.extend(read_dir_roots(&dir, opts.cert_dir.is_some())?);
    }
    Ok(roots)
}

/// The `*.crt` files of `dir`, in name order, checked to be PEM
/// certificates. A missing directory is only an error when `required`.
fn read_dir_roots(dir: &Path, required: bool) -> Result<Vec<Vec<u8>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(dir, e))?;
    paths.sort();
    let mut roots = Vec::new();
    for path in paths {
        match path.extension().and_then(|e| e.to_str()) {
            Some("crt") => {
                let pem = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::Usage(format!(
                        "{}: not a PEM certificate: {e}",
                        crate::escape::path(&path)
                    ))
                })?;
                if certs.is_empty() {
                    return Err(Error::Usage(format!(
                        "{}: no PEM certificate in it",
                        crate::escape::path(&path)
                    )));
                }
                tracing::debug!("CA roots from {}", path.display());
                roots.push(pem);
            }
            Some("cert") | Some("key") => tracing::warn!(
                "{}: client certificates are not supported; ignored",
                path.display()
            ),
            _ => {}
        }
    }
    Ok(roots)
}
