//! `glucoengine import` and `glucoengine export`: the person's import and export, run by the
//! operator on the store directly, and the logical backup of every account (`--all`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use glucosync_domain::accounts::Email;
use glucosync_domain::import::{DateOrder, ImportFormat};
use glucosync_server::export::{json_export, ExportFor};
use glucosync_server::import::{import_file, ImportFailure, ImportReport, ImportRequest};
use glucosync_store::{AdminGrant, NewUser, Store, User};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

pub struct ImportArgs {
    pub format: String,
    pub time_zone: Option<String>,
    pub date_order: Option<String>,
}

async fn user(store: &dyn Store, email: &str) -> Result<User> {
    let email = Email::parse(email)?;
    match store.user_by_email(email.as_str()).await? {
        Some((user, _)) => Ok(user),
        None => bail!("no account with the email {}", email.as_str()),
    }
}

pub async fn import_one(
    store: Arc<dyn Store>,
    email: &str,
    path: &Path,
    args: ImportArgs,
) -> Result<()> {
    let format = ImportFormat::parse(&args.format).with_context(|| {
        format!(
            "unknown format {:?}: glucosync, clarity, libreview or nightscout",
            args.format
        )
    })?;
    let date_order = match args.date_order.as_deref() {
        None => None,
        Some("day_first") => Some(DateOrder::DayFirst),
        Some("month_first") => Some(DateOrder::MonthFirst),
        Some(other) => bail!("--date-order {other:?}: day_first or month_first"),
    };
    let account = user(&*store, email).await?;
    let time_zone = match args.time_zone {
        Some(zone) => zone
            .parse()
            .map_err(|_| anyhow::anyhow!("--time-zone {zone:?} is not an IANA time zone"))?,
        None => account.settings.time_zone.parse().unwrap_or(chrono_tz::UTC),
    };
    let request = ImportRequest {
        format,
        time_zone,
        date_order,
        apply_settings: true,
        now_ms: glucosync_server::state::now_ms(),
    };
    let report = run_import(store, account.id, path, &request).await?;
    print_report(email, &report);
    Ok(())
}

async fn run_import(
    store: Arc<dyn Store>,
    user_id: i64,
    path: &Path,
    request: &ImportRequest,
) -> Result<ImportReport> {
    import_file(store, user_id, path, request)
        .await
        .map_err(|e| match e {
            ImportFailure::Malformed(e) => {
                anyhow::anyhow!("{}: nothing was imported: {e}", path.display())
            }
            other => anyhow::anyhow!("{}: {other}", path.display()),
        })
}

fn print_report(email: &str, r: &ImportReport) {
    println!(
        "{email}: {} rows; readings {} new, {} already there, {} already from another device; \
         treatments {} new, {} already there; documents {} new; {} skipped{}",
        r.rows,
        r.readings.imported,
        r.readings.duplicates,
        r.readings.already_from_another_device,
        r.treatments.imported,
        r.treatments.duplicates,
        r.documents.imported,
        r.skipped_total,
        if r.settings_applied {
            "; settings applied"
        } else {
            ""
        }
    );
    for (reason, count) in &r.skipped_by_reason {
        println!("  skipped {count}: {reason}");
    }
}

/// Pulls a Nightscout site's history into an account.
pub async fn pull_nightscout(
    store: Arc<dyn Store>,
    email: &str,
    pull: glucosync_server::import::nightscout_pull::Pull,
) -> Result<()> {
    let account = user(&*store, email).await?;
    let spool = tempfile::NamedTempFile::new()?;
    let (file, path) = spool.into_parts();
    let mut writer = std::io::BufWriter::new(file);
    let pulled = glucosync_server::import::nightscout_pull::pull_into(&pull, &mut writer).await?;
    drop(writer);
    eprintln!("pulled {pulled} records from {}", pull.url);
    let request = ImportRequest {
        format: ImportFormat::Nightscout,
        time_zone: chrono_tz::UTC,
        date_order: None,
        apply_settings: false,
        now_ms: glucosync_server::state::now_ms(),
    };
    let report = run_import(store, account.id, &path, &request).await?;
    print_report(email, &report);
    Ok(())
}

/// Writes one account's export to `output` (standard output when none).
pub async fn export_one(store: Arc<dyn Store>, email: &str, output: Option<PathBuf>) -> Result<()> {
    let account = user(&*store, email).await?;
    match output {
        Some(path) => {
            write_export(store, account, ExportFor::Person, &path).await?;
            eprintln!("exported {email} to {}", path.display());
        }
        None => {
            let body = json_export(store, account, ExportFor::Person);
            let mut stream = body.into_data_stream();
            let mut stdout = tokio::io::stdout();
            while let Some(chunk) = stream.next().await {
                stdout
                    .write_all(&chunk.context("the export failed")?)
                    .await?;
            }
            stdout.flush().await?;
        }
    }
    Ok(())
}

/// Streams an export into `path` through a temporary file renamed into place when complete,
/// so a failed export never leaves a file that looks whole.
async fn write_export(
    store: Arc<dyn Store>,
    account: User,
    audience: ExportFor,
    path: &Path,
) -> Result<u64> {
    let partial = path.with_extension("json.partial");
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let mut stream = json_export(store, account, audience).into_data_stream();
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the export failed")?;
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, path).await?;
    Ok(bytes)
}

/// Every account into `dir`, one `<id>.json` each (with the password hash and roles).
pub async fn export_all(store: Arc<dyn Store>, dir: &Path) -> Result<()> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let (mut after, mut accounts, mut bytes) = (0, 0u64, 0u64);
    loop {
        let page = store.list_users(after, 100).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for account in page {
            let path = dir.join(format!("{}.json", account.id));
            bytes += write_export(store.clone(), account, ExportFor::Operator, &path).await?;
            accounts += 1;
        }
    }
    println!(
        "exported {accounts} accounts ({bytes} bytes) to {}",
        dir.display()
    );
    Ok(())
}

#[derive(Deserialize)]
struct ExportHead {
    account: AccountHead,
}

#[derive(Deserialize)]
struct AccountHead {
    email: String,
    password_hash: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    disabled: bool,
    /// An account awaiting deletion stays so after a restore.
    #[serde(default)]
    deletion_due_ms: Option<i64>,
}

/// Recreates every account of an `export --all` directory where missing and imports its data.
pub async fn import_all(store: Arc<dyn Store>, dir: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .json exports in {}", dir.display());
    }
    for path in files {
        let head: ExportHead = {
            let file = std::fs::File::open(&path)?;
            serde_json::from_reader(std::io::BufReader::new(file))
                .with_context(|| format!("{} is not a GlucoSync export", path.display()))?
        };
        let account = head.account;
        let email = Email::parse(&account.email)?;
        let user_id = match store.user_by_email(email.as_str()).await? {
            Some((user, _)) => user.id,
            None => {
                let Some(hash) = account.password_hash else {
                    bail!(
                        "{} has no password hash: it is a person's export, not from export --all",
                        path.display()
                    );
                };
                let user = store
                    .create_user(NewUser {
                        email,
                        password_hash: hash,
                        admin: if account.is_admin {
                            AdminGrant::Yes
                        } else {
                            AdminGrant::No
                        },
                        now_ms: glucosync_server::state::now_ms(),
                    })
                    .await?;
                if account.disabled {
                    store.set_disabled(user.id, true).await?;
                }
                if let Some(due) = account.deletion_due_ms {
                    let now = glucosync_server::state::now_ms();
                    store.request_deletion(user.id, due, now).await?;
                }
                user.id
            }
        };
        let request = ImportRequest {
            format: ImportFormat::GlucoSync,
            time_zone: chrono_tz::UTC,
            date_order: None,
            apply_settings: true,
            now_ms: glucosync_server::state::now_ms(),
        };
        let report = run_import(store.clone(), user_id, &path, &request).await?;
        print_report(&account.email, &report);
    }
    Ok(())
}
