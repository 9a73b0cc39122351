//! `glucoengine`: the GlucoSync server and its operator command line, in one binary.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use glucosync_domain::accounts::{check_password_policy, Email};
use glucosync_server::config::{Config, EXAMPLE_CONFIG};
use glucosync_server::{auth, open_store, shutdown_signal, Server};
use glucosync_store::{AdminGrant, NewUser, Store};

mod data;

#[derive(Parser)]
#[command(
    name = "glucoengine",
    version,
    about = "GlucoSync's server and operator tools"
)]
struct Cli {
    /// TOML configuration file (also GLUCOSYNC_CONFIG). Environment variables override it.
    #[arg(long, global = true, env = "GLUCOSYNC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve {
        /// Create or refresh a demo account with ten days of simulated data, and print its login.
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print a commented example configuration file.
    DefaultConfig,
    /// Check that the server on this machine is alive (`/health` answers 200 within the
    /// timeout) and exit 0, else 1: a container HEALTHCHECK in an image without curl.
    Healthcheck {
        /// The URL to ask. Default: /health on GLUCOSYNC_LISTEN's port (on 127.0.0.1 when the
        /// server listens on every address).
        #[arg(long)]
        url: Option<String>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Print the effective configuration (defaults, file, environment), secrets redacted.
    ShowConfig,
    /// Import a file into an account (the formats of POST /api/v1/import), or with --all
    /// restore every account of an `export --all` directory.
    Import {
        /// The account's email (not with --all: each export names its account).
        #[arg(long, required_unless_present = "all")]
        user: Option<String>,
        /// glucosync, clarity, libreview or nightscout.
        #[arg(long, default_value = "glucosync")]
        format: String,
        /// IANA zone of the file's wall-clock times (Clarity, LibreView); default the account's.
        #[arg(long)]
        time_zone: Option<String>,
        /// day_first or month_first (LibreView); default: learnt from the file.
        #[arg(long)]
        date_order: Option<String>,
        /// PATH is a directory written by `export --all`: recreate each account in it (with its
        /// password) where missing, and import its data.
        #[arg(long, conflicts_with_all = ["user", "time_zone", "date_order"])]
        all: bool,
        /// Pull from this Nightscout site's API instead of a file (with --nightscout-token or
        /// --nightscout-secret).
        #[arg(long, conflicts_with = "all")]
        nightscout_url: Option<String>,
        #[arg(long, requires = "nightscout_url")]
        nightscout_token: Option<String>,
        #[arg(long, requires = "nightscout_url")]
        nightscout_secret: Option<String>,
        /// The file, or the directory with --all.
        #[arg(required_unless_present = "nightscout_url")]
        path: Option<PathBuf>,
    },
    /// Export an account as GlucoSync's JSON (as GET /api/v1/export), or with --all every
    /// account, one file each with its password hash: a logical backup (`import --all`).
    Export {
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        user: Option<String>,
        #[arg(long, requires = "output")]
        all: bool,
        /// The file (default: standard output), or the directory with --all.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Back the embedded database up (online: the server keeps running) into a directory or
    /// s3://bucket/prefix, compressed and encrypted with backup_key, with its SHA-256 beside
    /// it; then delete backups older than backup_retention_days there. Prints the location.
    Backup {
        /// Default: backup_output (GLUCOSYNC_BACKUP_OUTPUT).
        #[arg(long)]
        output: Option<String>,
    },
    /// Restore a backup (a file, or s3://bucket/key) into the configured data directory, which
    /// must hold no database yet. Checks the SHA-256 and the database's integrity first.
    Restore { backup: String },
    /// Forecast models: evaluation against the baselines.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Evaluate every model on patient CSVs (the columns of shared/data/simglucose, or `time`
    /// and `glucose` only): each patient's first 70 % of days train, the rest test, and the
    /// population model of a patient is fitted on the others only.
    Eval {
        /// A directory of CSV files, one per patient.
        #[arg(long)]
        data: PathBuf,
        /// Ignore the treatment columns (as for a person who logs none).
        #[arg(long)]
        glucose_only: bool,
        /// Log the evaluation as a run in this MLflow tracking server.
        #[arg(long, env = "GLUCOSYNC_MLFLOW_URL")]
        mlflow_url: Option<String>,
    },
    /// Fit the population model (served to people without a personal model) on every row of
    /// the patient CSVs in a directory, and write it as JSON. The shipped one is
    /// crates/domain/src/forecast/population.json, fitted on shared/data/simglucose.
    FitPopulation {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Log the fit as a run in this MLflow tracking server (the model as its artifact).
        #[arg(long, env = "GLUCOSYNC_MLFLOW_URL")]
        mlflow_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input (one line) if
    /// --password-stdin is given, otherwise a strong one is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
        /// Make the account an admin.
        #[arg(long)]
        admin: bool,
    },
    /// Make an account an admin.
    Promote { email: String },
    /// Take the admin role away.
    Demote { email: String },
    /// Disable an account: it can no longer log in, and every session and token is revoked.
    Disable { email: String },
    /// Enable a disabled account again.
    Enable { email: String },
    /// Delete an account and all its data: at once with --now, otherwise after the grace
    /// period (account_deletion_grace_days) as if its owner had asked.
    Delete {
        email: String,
        #[arg(long)]
        now: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::DefaultConfig => {
            print!("{EXAMPLE_CONFIG}");
            return Ok(());
        }
        Command::ShowConfig => {
            print!("{}", load_config(&cli)?.to_redacted_toml());
            return Ok(());
        }
        Command::Healthcheck { url, timeout } => {
            let url = match url {
                Some(u) => u.clone(),
                None => health_url(load_config(&cli)?.listen),
            };
            match check_health(&url, std::time::Duration::from_secs(*timeout)) {
                Ok(()) => {
                    println!("healthy: {url}");
                    return Ok(());
                }
                Err(why) => {
                    eprintln!("unhealthy: {url}: {why}");
                    std::process::exit(1);
                }
            }
        }
        Command::Model {
            command:
                ModelCommand::Eval {
                    data,
                    glucose_only,
                    mlflow_url,
                },
        } => return model_eval(data, *glucose_only, mlflow_url.as_deref()),
        Command::Model {
            command:
                ModelCommand::FitPopulation {
                    data,
                    output,
                    mlflow_url,
                },
        } => {
            let people: Vec<_> = read_patients(data)?
                .into_iter()
                .map(|s| {
                    let rows = s.len();
                    (s, rows)
                })
                .collect();
            let model = glucosync_domain::forecast::fit_population(&people);
            std::fs::write(output, model.to_json())
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "population model: {} people, {} rows per step, written to {}",
                people.len(),
                model.full.training_rows,
                output.display()
            );
            if let Some(url) = mlflow_url {
                let mut metrics =
                    vec![("training_rows".to_owned(), model.full.training_rows as f64)];
                for (inputs, m) in [("full", &model.full), ("glucose_only", &model.glucose_only)] {
                    for (step, s) in m.steps.iter().enumerate() {
                        let minutes = 5 * (step + 1);
                        metrics.push((format!("{inputs}.interval_p10.{minutes}min"), s.error_p10));
                        metrics.push((format!("{inputs}.interval_p90.{minutes}min"), s.error_p90));
                    }
                }
                log_to_mlflow(
                    url,
                    glucosync_server::mlflow::Run {
                        experiment: "glucosync-forecast-population".into(),
                        name: format!("population from {}", data.display()),
                        params: vec![
                            (
                                "model_family".into(),
                                glucosync_server::forecasting::MODEL_FAMILY.into(),
                            ),
                            ("people".into(), people.len().to_string()),
                            ("data".into(), data.display().to_string()),
                        ],
                        metrics,
                        tags: Vec::new(),
                        artifacts: vec![("population.json".into(), model.to_json().into_bytes())],
                    },
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let mut config = load_config(&cli)?;
    if let Command::Serve { demo: true } = cli.command {
        config.demo = true;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let traces = glucosync_server::telemetry::init(
        config.log_format,
        &config.log_level,
        config
            .otlp_endpoint
            .as_deref()
            .map(|endpoint| (endpoint, runtime.handle())),
    );
    let result = runtime.block_on(run(cli.command, config));
    // The last spans are exported from the runtime's threads, which still run.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}

fn load_config(cli: &Cli) -> Result<Config> {
    Ok(Config::load(cli.config.as_deref(), std::env::vars())?)
}

async fn run(command: Command, config: Config) -> Result<()> {
    match command {
        Command::Serve { .. } => serve(config).await,
        Command::Migrate => {
            let store = open_store(&config)?;
            store.migrate().await?;
            let r = store.readiness().await?;
            store.close().await;
            println!(
                "database at migration {} of {}",
                r.applied_migration, r.latest_migration
            );
            Ok(())
        }
        Command::User { command } => {
            let store = open_store(&config)?;
            store.migrate().await?;
            let result = user_command(store.as_ref(), &config, command).await;
            store.close().await;
            result
        }
        Command::Import {
            user,
            format,
            time_zone,
            date_order,
            all,
            nightscout_url,
            nightscout_token,
            nightscout_secret,
            path,
        } => {
            let store = open_store(&config)?;
            store.migrate().await?;
            let result = if let Some(url) = nightscout_url {
                let pull = glucosync_server::import::nightscout_pull::Pull {
                    url,
                    token: nightscout_token,
                    api_secret: nightscout_secret,
                    since_ms: None,
                    // The operator runs this on purpose: any address they name.
                    allow_private_addresses: true,
                };
                data::pull_nightscout(store.clone(), user.as_deref().unwrap_or_default(), pull)
                    .await
            } else if all {
                data::import_all(store.clone(), path.as_deref().unwrap_or(Path::new("."))).await
            } else {
                let options = data::ImportArgs {
                    format,
                    time_zone,
                    date_order,
                };
                data::import_one(
                    store.clone(),
                    user.as_deref().unwrap_or_default(),
                    path.as_deref().unwrap_or(Path::new("-")),
                    options,
                )
                .await
            };
            store.close().await;
            result
        }
        Command::Export { user, all, output } => {
            let store = open_store(&config)?;
            store.migrate().await?;
            let result = match (all, output) {
                (true, Some(dir)) => data::export_all(store.clone(), &dir).await,
                (_, output) => {
                    data::export_one(store.clone(), user.as_deref().unwrap_or_default(), output)
                        .await
                }
            };
            store.close().await;
            result
        }
        Command::Backup { output } => {
            let Some(output) = output.or_else(|| config.backup_output.clone()) else {
                bail!("where to? pass --output <directory or s3://bucket/prefix>, or set backup_output");
            };
            // No store is opened: the backup reads the database on a connection of its own and
            // must not touch a running server's WAL (see `glucosync_store_sqlite::snapshot`).
            let report = glucosync_server::backup::backup(&config, &output).await?;
            println!("{}", report.location);
            eprintln!(
                "backup: {} bytes, sha256 {}, {:.1} s{}",
                report.bytes,
                report.sha256,
                report.duration.as_secs_f64(),
                if report.expired.is_empty() {
                    String::new()
                } else {
                    format!("; expired and deleted: {}", report.expired.join(", "))
                }
            );
            Ok(())
        }
        Command::Restore { backup } => {
            let report = glucosync_server::backup::restore(&config, &backup).await?;
            // Bring the restored database to this version's schema.
            let store = open_store(&config)?;
            store.migrate().await?;
            store.close().await;
            println!(
                "restored the backup of {} (schema {}) into {} in {:.1} s",
                report.created_at,
                report.schema_migration,
                report.database.display(),
                report.duration.as_secs_f64()
            );
            Ok(())
        }
        Command::DefaultConfig
        | Command::ShowConfig
        | Command::Healthcheck { .. }
        | Command::Model { .. } => Ok(()),
    }
}

/// Every `*.csv` of a directory as one person's series, in file-name order.
fn read_patients(dir: &std::path::Path) -> Result<Vec<glucosync_domain::forecast::Series>> {
    use glucosync_domain::forecast::evaluation::parse_csv;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .csv files in {}", dir.display());
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            parse_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
        })
        .collect()
}

/// Logs a run; MLflow being unreachable is reported, never an error of the command.
/// `/health` on the port the server listens on; an unspecified address (0.0.0.0, ::) is
/// reached on loopback.
fn health_url(listen: std::net::SocketAddr) -> String {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/health",
        std::net::SocketAddr::new(ip, listen.port())
    )
}

fn check_health(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("status {}", response.status()))
        }
    })
}

fn log_to_mlflow(url: &str, run: glucosync_server::mlflow::Run) {
    let now = glucosync_server::state::now_ms();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(glucosync_server::mlflow::Mlflow::new(url).log(&run, now))
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(run_id) => println!(
            "MLflow: logged run {run_id} in experiment {}",
            run.experiment
        ),
        Err(e) => {
            eprintln!("MLflow unreachable, nothing logged (the results above are complete): {e}")
        }
    }
}

fn model_eval(dir: &std::path::Path, glucose_only: bool, mlflow_url: Option<&str>) -> Result<()> {
    use glucosync_domain::forecast::evaluation::evaluate;
    let people: Vec<_> = read_patients(dir)?
        .into_iter()
        .map(|s| if glucose_only { s.glucose_only() } else { s })
        .collect();
    let started = std::time::Instant::now();
    let report = evaluate(&people);
    println!(
        "{} people, chronological split (first 70 % of days train){}; evaluated in {:.1} s\n",
        report.people,
        if glucose_only {
            ", treatments withheld"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<22} {:>4} {:>7} {:>9} {:>7} {:>7} {:>9} {:>9} {:>10} {:>6} {:>9}",
        "model",
        "min",
        "points",
        "RMSE",
        "MAE",
        "MARD %",
        "Clarke A",
        "Clarke AB",
        "Parkes AB",
        "lag",
        "PI80 cov"
    );
    for minutes in [30, 60] {
        let ar2 = report
            .get("ar2", minutes)
            .map(|s| s.rmse)
            .unwrap_or(f64::NAN);
        for (model, m, s) in report.rows.iter().filter(|r| r.1 == minutes) {
            println!(
                "{model:<22} {m:>4} {:>7} {:>5.2} ({:.2}) {:>7.2} {:>7.1} {:>9.1} {:>9.2} {:>10.2} {:>6.0} {:>9}",
                s.points,
                s.rmse,
                s.rmse / ar2,
                s.mae,
                s.mard,
                s.clarke_a,
                s.clarke_ab,
                s.parkes_ab,
                s.lag_minutes,
                s.coverage.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into())
            );
        }
    }
    println!("\nRMSE in mg/dL (ratio to AR2 on the same points); lag in minutes.");
    if !glucose_only {
        let c = glucosync_domain::forecast::evaluation::evaluate_compression_lows(&people);
        println!(
            "\nCompression lows (simulated, two a night in the test days; personal model):\n\
             {} episodes, {} suspected at their first or second reading; {} origins in them:\n\
             false predicted-low alarms {} with the rule vs {} without; RMSE 30 min vs the real \
             glucose {:.1} vs {:.1}.\n\
             Without them: the rule fired at {} of {} origins ({} before a real low); RMSE 30 min \
             {:.2} vs {:.2}.",
            c.episodes,
            c.suspected,
            c.origins,
            c.false_alarms_handled,
            c.false_alarms_ignored,
            c.rmse30_handled,
            c.rmse30_ignored,
            c.clean_suspected,
            c.clean_origins,
            c.clean_suspected_before_low,
            c.clean_rmse30_handled,
            c.clean_rmse30_ignored
        );
    }
    if let Some(url) = mlflow_url {
        let mut metrics = Vec::new();
        for (model, minutes, s) in &report.rows {
            let ar2 = report
                .get("ar2", *minutes)
                .map(|a| a.rmse)
                .unwrap_or(f64::NAN);
            let key = |name: &str| format!("{model}.{name}.{minutes}min");
            metrics.extend([
                (key("rmse"), s.rmse),
                (key("rmse_vs_ar2"), s.rmse / ar2),
                (key("mae"), s.mae),
                (key("mard"), s.mard),
                (key("clarke_a"), s.clarke_a),
                (key("clarke_ab"), s.clarke_ab),
                (key("parkes_ab"), s.parkes_ab),
                (key("lag_minutes"), s.lag_minutes),
                (key("points"), s.points as f64),
            ]);
            if let Some(c) = s.coverage {
                metrics.push((key("interval_coverage"), c));
            }
        }
        let table = report
            .rows
            .iter()
            .map(|(m, h, s)| {
                format!(
                    "{m}\t{h}\t{:.3}\t{:.3}\t{:.2}\t{:.2}\n",
                    s.rmse, s.mae, s.clarke_ab, s.parkes_ab
                )
            })
            .collect::<String>();
        log_to_mlflow(
            url,
            glucosync_server::mlflow::Run {
                experiment: "glucosync-forecast-evaluation".into(),
                name: format!("evaluation on {}", dir.display()),
                params: vec![
                    (
                        "model_family".into(),
                        glucosync_server::forecasting::MODEL_FAMILY.into(),
                    ),
                    ("people".into(), report.people.to_string()),
                    (
                        "split".into(),
                        "first 70 % of each person's days train".into(),
                    ),
                    ("glucose_only".into(), glucose_only.to_string()),
                    ("data".into(), dir.display().to_string()),
                ],
                metrics,
                tags: Vec::new(),
                artifacts: vec![
                    (
                        "evaluation.tsv".into(),
                        format!("model\tminutes\trmse\tmae\tclarke_ab\tparkes_ab\n{table}")
                            .into_bytes(),
                    ),
                    (
                        "population.json".into(),
                        glucosync_domain::forecast::SHIPPED_POPULATION_JSON
                            .as_bytes()
                            .to_vec(),
                    ),
                ],
            },
        );
    }
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    let server = Server::build(config).await?;
    let addr = server.local_addr();
    if let Some(demo) = &server.demo {
        println!();
        println!(
            "  GlucoSync is running: the app at http://{addr}/app/ , the site at http://{addr}/"
        );
        println!("  (API reference: http://{addr}/api/docs)");
        println!(
            "  Demo account: {}  password: {}",
            demo.email, demo.password
        );
        println!(
            "  ({} CGM readings and {} treatments over the last ten days; the password changes at every start)",
            demo.readings, demo.treatments
        );
        println!();
    }
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn find_user(store: &dyn Store, email: &str) -> Result<i64> {
    let email = Email::parse(email)?;
    match store.user_by_email(email.as_str()).await? {
        Some((user, _)) => Ok(user.id),
        None => bail!("no account with the email {}", email.as_str()),
    }
}

async fn user_command(store: &dyn Store, config: &Config, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Create {
            email,
            password_stdin,
            admin,
        } => {
            let email = Email::parse(&email)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (auth::new_secret("")[..24].to_owned(), true)
            };
            check_password_policy(&password, email.as_str())?;
            let hash = auth::hash_password(password.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let user = store
                .create_user(NewUser {
                    email,
                    password_hash: hash,
                    admin: if admin {
                        AdminGrant::Yes
                    } else {
                        AdminGrant::IfFirst
                    },
                    now_ms: glucosync_server::state::now_ms(),
                })
                .await?;
            println!(
                "created account {} (id {}{})",
                user.email,
                user.id,
                if user.is_admin { ", admin" } else { "" }
            );
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::Promote { email } => {
            store
                .set_admin(find_user(store, &email).await?, true)
                .await?;
            println!("{email} is now an admin");
        }
        UserCommand::Demote { email } => {
            store
                .set_admin(find_user(store, &email).await?, false)
                .await?;
            println!("{email} is no longer an admin");
        }
        UserCommand::Disable { email } => {
            let revoked = store
                .set_disabled(find_user(store, &email).await?, true)
                .await?;
            println!(
                "{email} is disabled; {} sessions and tokens revoked",
                revoked.len()
            );
        }
        UserCommand::Delete { email, now } => {
            let id = find_user(store, &email).await?;
            let time = glucosync_server::state::now_ms();
            // The server's caches and live followers hear of it within a minute (the
            // credential cache's lifetime); `DELETE /api/v1/me` tells them at once.
            if now || config.account_deletion_grace_days == 0 {
                store.request_deletion(id, time, time).await?;
                store.delete_account(id).await?;
                println!("{email} is deleted, with all its data");
            } else {
                let grace = i64::from(config.account_deletion_grace_days) * 86_400_000;
                store.request_deletion(id, time + grace, time).await?;
                println!(
                    "{email} will be deleted on {} (its owner can log in and keep it until then)",
                    glucosync_domain::Timestamp::from_utc_ms(time + grace).to_rfc3339_utc()
                );
            }
        }
        UserCommand::Enable { email } => {
            store
                .set_disabled(find_user(store, &email).await?, false)
                .await?;
            println!("{email} is enabled");
        }
    }
    Ok(())
}
