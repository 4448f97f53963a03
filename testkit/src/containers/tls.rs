//! Certificates made at test time, so no key is ever committed and every
//! run has its own.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A directory of its own holding a test CA and a server certificate it
/// signed for `127.0.0.1` and `localhost`:
///
/// * `ca.pem`: the CA certificate clients trust;
/// * `server.pem`, `server.key`: the broker's certificate and key;
/// * `other-ca.pem`: a second CA that signed nothing here, for clients that
///   must refuse the broker's certificate.
///
/// A broker container sees the directory at its spec's `files` path and
/// may keep its data there too; the directory is removed with the value.
#[derive(Debug)]
pub struct TlsFiles {
    dir: PathBuf,
}

impl TlsFiles {
    /// Makes a CA, a server certificate and a second CA in a new directory.
    pub fn generate() -> Result<Self> {
        let dir = std::env::temp_dir().join(crate::wait::unique("eventlog-tls"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = Self { dir };
        let ca = new_ca("eventlog test CA")?;
        let other = new_ca("eventlog untrusted CA")?.pem();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".into()])?;
        server
            .distinguished_name
            .push(DnType::CommonName, "eventlog test broker");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &ca)?;
        for (name, pem) in [
            ("ca.pem", ca.pem()),
            ("other-ca.pem", other),
            ("server.pem", server_cert.pem()),
            ("server.key", server_key.serialize_pem()),
        ] {
            std::fs::write(files.dir.join(name), pem)
                .with_context(|| format!("writing {name} in {}", files.dir.display()))?;
        }
        Ok(files)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (PEM) that signed the broker's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A CA certificate (PEM) that did not sign the broker's certificate.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca_params(name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    Ok(CertifiedIssuer::self_signed(
        ca_params(name)?,
        KeyPair::generate()?,
    )?)
}
