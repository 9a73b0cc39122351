//! The backup file (docs/data-ownership.md, "Backups"):
//!
//! ```text
//! GSBACKUP1\n
//! {"format":"glucosync-backup","version":1,...}\n      the header, one JSON line
//! [u32 length][AES-256-GCM ciphertext + tag]           chunks of 1 MiB of plaintext
//! ...                                                  the last one flagged as last
//! ```
//!
//! The plaintext is the zstd-compressed database snapshot. The key is derived from the
//! configured passphrase with Argon2id and a salt of the file's own; every chunk's nonce is
//! the file's random prefix, the chunk's number and a last-chunk flag (the STREAM
//! construction), and the header's SHA-256 is every chunk's associated data. So a changed
//! header, a changed, reordered or dropped chunk, and a cut-off file all fail to open. The
//! whole file's SHA-256 is stored beside it (`<name>.sha256`) and checked before anything is
//! decrypted.

use std::io::{self, Read, Write};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8] = b"GSBACKUP1\n";
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// The shortest passphrase accepted as `backup_key`.
pub const MIN_KEY_CHARS: usize = 16;
const TAG_BYTES: usize = 16;

/// What the file holds and how to open it; in the clear (it carries no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub created_at: String,
    /// What the plaintext is: `sqlite`, a database file (the only kind so far).
    pub content: String,
    /// The database's schema migration when it was taken.
    pub schema_migration: i64,
    pub compression: String,
    pub cipher: String,
    pub kdf: Kdf,
    /// Seven random bytes, base64: the first part of every chunk's nonce.
    pub nonce_prefix: String,
    pub chunk_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kdf {
    pub name: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Sixteen random bytes, base64.
    pub salt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a GlucoSync backup (no GSBACKUP1 header)")]
    NotABackup,
    #[error("the backup header is unreadable: {0}")]
    BadHeader(String),
    #[error(
        "the backup does not open with this key, or it was changed or damaged (chunk {chunk})"
    )]
    Authentication { chunk: u32 },
    #[error("the backup is cut short: its last chunk is missing")]
    Truncated,
    #[error("the backup key: {0}")]
    Key(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<FormatError> for io::Error {
    fn from(e: FormatError) -> Self {
        match e {
            FormatError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

fn derive_key(passphrase: &str, kdf: &Kdf) -> Result<Aes256Gcm, FormatError> {
    if kdf.name != "argon2id" {
        return Err(FormatError::BadHeader(format!("unknown KDF {}", kdf.name)));
    }
    let salt = B64
        .decode(&kdf.salt)
        .map_err(|_| FormatError::BadHeader("salt".into()))?;
    let params = argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| FormatError::BadHeader(format!("KDF parameters: {e}")))?;
    let mut key = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), &salt, &mut key)
        .map_err(|e| FormatError::Key(e.to_string()))?;
    Aes256Gcm::new_from_slice(&key).map_err(|e| FormatError::Key(e.to_string()))
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Encrypts into `inner` as it is written to; [`Sealer::finish`] writes the last chunk.
pub struct Sealer<W: Write> {
    inner: W,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    aad: [u8; 32],
    counter: u32,
    buf: Vec<u8>,
}

impl<W: Write> Sealer<W> {
    /// Writes the magic and the header to `inner`.
    pub fn new(
        mut inner: W,
        passphrase: &str,
        content: &str,
        schema_migration: i64,
        created_at: String,
    ) -> Result<Self, FormatError> {
        let mut rng = rand::thread_rng();
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut prefix = [0u8; 7];
        rng.fill_bytes(&mut prefix);
        let defaults = argon2::Params::default();
        let header = Header {
            format: "glucosync-backup".into(),
            version: 1,
            created_at,
            content: content.into(),
            schema_migration,
            compression: "zstd".into(),
            cipher: "AES-256-GCM".into(),
            kdf: Kdf {
                name: "argon2id".into(),
                memory_kib: defaults.m_cost(),
                iterations: defaults.t_cost(),
                parallelism: defaults.p_cost(),
                salt: B64.encode(salt),
            },
            nonce_prefix: B64.encode(prefix),
            chunk_bytes: CHUNK_BYTES,
        };
        let cipher = derive_key(passphrase, &header.kdf)?;
        let line =
            serde_json::to_vec(&header).map_err(|e| FormatError::BadHeader(e.to_string()))?;
        inner.write_all(MAGIC)?;
        inner.write_all(&line)?;
        inner.write_all(b"\n")?;
        Ok(Self {
            inner,
            cipher,
            prefix,
            aad: Sha256::digest(&line).into(),
            counter: 0,
            buf: Vec::with_capacity(CHUNK_BYTES),
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&n),
                Payload {
                    msg: &self.buf,
                    aad: &self.aad,
                },
            )
            .map_err(|_| io::Error::other("encryption failed"))?;
        self.inner.write_all(&(sealed.len() as u32).to_be_bytes())?;
        self.inner.write_all(&sealed)?;
        self.buf.clear();
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("the backup is too large (2^32 chunks)"))?;
        Ok(())
    }

    /// Writes the last chunk and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_BYTES {
            self.seal(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the header of a backup.
pub fn read_header(input: &mut impl Read) -> Result<(Header, [u8; 32]), FormatError> {
    let mut magic = [0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| FormatError::NotABackup)?;
    if magic != MAGIC {
        return Err(FormatError::NotABackup);
    }
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        input.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 64 * 1024 {
            return Err(FormatError::BadHeader("longer than 64 KiB".into()));
        }
    }
    let header: Header =
        serde_json::from_slice(&line).map_err(|e| FormatError::BadHeader(e.to_string()))?;
    if header.format != "glucosync-backup" || header.version != 1 {
        return Err(FormatError::BadHeader(format!(
            "{} version {} is not one this server reads",
            header.format, header.version
        )));
    }
    Ok((header, Sha256::digest(&line).into()))
}

/// Decrypts a backup as it is read.
pub struct Opener<R: Read> {
    inner: R,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    aad: [u8; 32],
    counter: u32,
    plain: Vec<u8>,
    at: usize,
    done: bool,
    pub header: Header,
}

impl<R: Read> Opener<R> {
    pub fn new(mut inner: R, passphrase: &str) -> Result<Self, FormatError> {
        let (header, aad) = read_header(&mut inner)?;
        let cipher = derive_key(passphrase, &header.kdf)?;
        let prefix: [u8; 7] = B64
            .decode(&header.nonce_prefix)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| FormatError::BadHeader("nonce prefix".into()))?;
        Ok(Self {
            inner,
            cipher,
            prefix,
            aad,
            counter: 0,
            plain: Vec::new(),
            at: 0,
            done: false,
            header,
        })
    }

    fn next_chunk(&mut self) -> Result<(), FormatError> {
        let mut len = [0u8; 4];
        match self.inner.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(FormatError::Truncated)
            }
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG_BYTES..=CHUNK_BYTES + TAG_BYTES).contains(&len) {
            return Err(FormatError::Authentication {
                chunk: self.counter,
            });
        }
        let mut sealed = vec![0u8; len];
        self.inner.read_exact(&mut sealed).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                FormatError::Truncated
            } else {
                e.into()
            }
        })?;
        // A chunk opens either as a middle chunk or as the last one; nothing else.
        for last in [false, true] {
            let n = nonce(&self.prefix, self.counter, last);
            if let Ok(plain) = self.cipher.decrypt(
                Nonce::from_slice(&n),
                Payload {
                    msg: &sealed,
                    aad: &self.aad,
                },
            ) {
                self.plain = plain;
                self.at = 0;
                self.counter += 1;
                if last {
                    self.done = true;
                    // Nothing may follow the last chunk.
                    let mut extra = [0u8; 1];
                    if self.inner.read(&mut extra)? != 0 {
                        return Err(FormatError::Authentication {
                            chunk: self.counter,
                        });
                    }
                }
                return Ok(());
            }
        }
        Err(FormatError::Authentication {
            chunk: self.counter,
        })
    }
}

impl<R: Read> Read for Opener<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A file writer that, when the file must be `durable`, syncs it every few megabytes, so that
/// the backup never holds much unsynced data: one large flush at the end would occupy the disk
/// long enough to stall the live server's own commits (each waits for its fsync). A working
/// file (uploaded elsewhere, then deleted) is never synced.
pub struct SyncEvery {
    file: std::fs::File,
    durable: bool,
    unsynced: usize,
}

impl SyncEvery {
    const BYTES: usize = 8 * 1024 * 1024;

    pub fn new(file: std::fs::File, durable: bool) -> Self {
        Self {
            file,
            durable,
            unsynced: 0,
        }
    }

    /// Syncs what is left (if durable) and returns the file.
    pub fn finish(self) -> io::Result<std::fs::File> {
        if self.durable {
            self.file.sync_all()?;
        }
        Ok(self.file)
    }
}

impl Write for SyncEvery {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.file.write(data)?;
        self.unsynced += n;
        if self.durable && self.unsynced >= Self::BYTES {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A writer that hashes what passes through it (the file's checksum, as it is written).
pub struct Hashing<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(plain: &[u8], key: &str) -> Vec<u8> {
        let mut sealer = Sealer::new(Vec::new(), key, "sqlite", 9, "now".into()).expect("sealer");
        sealer.write_all(plain).expect("write");
        sealer.finish().expect("finish")
    }

    fn open(file: &[u8], key: &str) -> Result<Vec<u8>, io::Error> {
        let mut opener = Opener::new(file, key)?;
        let mut out = Vec::new();
        opener.read_to_end(&mut out)?;
        Ok(out)
    }

    const KEY: &str = "correct horse battery staple";

    #[test]
    fn round_trips_across_chunks_and_empty() {
        let plain: Vec<u8> = (0..(CHUNK_BYTES * 2 + 1234))
            .map(|i| (i % 251) as u8)
            .collect();
        assert_eq!(open(&seal(&plain, KEY), KEY).expect("opens"), plain);
        assert_eq!(open(&seal(b"", KEY), KEY).expect("opens"), b"");
        let exact = vec![7u8; CHUNK_BYTES];
        assert_eq!(open(&seal(&exact, KEY), KEY).expect("opens"), exact);
    }

    #[test]
    fn a_wrong_key_a_changed_byte_or_a_cut_refuses() {
        let plain: Vec<u8> = (0..(CHUNK_BYTES + 10)).map(|i| (i % 13) as u8).collect();
        let file = seal(&plain, KEY);
        assert!(open(&file, "another passphrase!").is_err());
        let mut flipped = file.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        assert!(open(&flipped, KEY).is_err());
        // Dropping the last chunk: the file ends after a middle chunk.
        let first_chunk_end = MAGIC.len()
            + file[MAGIC.len()..]
                .iter()
                .position(|b| *b == b'\n')
                .expect("header")
            + 1
            + 4
            + CHUNK_BYTES
            + TAG_BYTES;
        let err = open(&file[..first_chunk_end], KEY).expect_err("cut");
        assert!(err.to_string().contains("cut short"), "{err}");
        // A changed header (even one the parser accepts) changes every chunk's AAD.
        let text = file.clone();
        let changed = String::from_utf8_lossy(&text[..200]).replace("\"sqlite\"", "\"logicl\"");
        let mut tampered = changed.into_bytes();
        tampered.extend_from_slice(&text[200..]);
        assert!(open(&tampered, KEY).is_err());
        assert!(matches!(
            Opener::new(&b"PK\x03\x04 a zip"[..], KEY),
            Err(FormatError::NotABackup)
        ));
    }
}
