//! `leadrelay broker-acl`: the broker's password and ACL entries for the service, every
//! participating court and every sighting feed (see `deploy/mosquitto/`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;

use crate::contract::task::Topics;
use crate::mqtt::acl::{camera_user, check_source_name, court_user, mosquitto_acl};
use crate::service::config::DataArgs;

#[derive(Debug, Args)]
pub struct BrokerAclArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// File of sighting sources (camera ids), one per line; `#` starts a comment (default:
    /// none, only the courts and the service get entries).
    #[arg(long)]
    pub sources: Option<PathBuf>,
    /// The service's `--topic-prefix`.
    #[arg(long, default_value = "")]
    pub topic_prefix: String,
    /// The service's broker user name.
    #[arg(long, default_value = "leadrelay")]
    pub service_user: String,
    /// Directory to write `acl` and `passwd` into.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace existing files (every password changes).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: BrokerAclArgs) -> anyhow::Result<ExitCode> {
    let geo = args.data.load()?;
    let courts: Vec<String> = geo
        .courts
        .iter()
        .filter(|c| c.participating)
        .map(|c| c.court_id.clone())
        .collect();
    let sources = match &args.sources {
        Some(path) => read_sources(path)?,
        None => Vec::new(),
    };
    check_source_name(&args.service_user).map_err(|e| anyhow::anyhow!("--service-user {e}"))?;
    let acl = mosquitto_acl(
        &Topics::new(&args.topic_prefix),
        &args.service_user,
        &courts,
        &sources,
    );
    let users = std::iter::once(args.service_user.clone())
        .chain(courts.iter().map(|c| court_user(c)))
        .chain(sources.iter().map(|s| camera_user(s)));
    let mut passwd = String::new();
    for user in users {
        passwd.push_str(&format!("{user}:{}\n", random_password()?));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let acl_path = args.out.join("acl");
    let passwd_path = args.out.join("passwd");
    for path in [&acl_path, &passwd_path] {
        if path.exists() && !args.force {
            bail!("{} exists; --force replaces it", path.display());
        }
    }
    std::fs::write(&acl_path, acl).with_context(|| format!("writing {}", acl_path.display()))?;
    write_secret(&passwd_path, &passwd)?;
    crate::outln!(
        "wrote {} ({} courts, {} sources) and {} (plain text, mode 0600)",
        acl_path.display(),
        courts.len(),
        sources.len(),
        passwd_path.display()
    );
    crate::outln!(
        "hand each party its line of {}, then hash it for Mosquitto: mosquitto_passwd -U {}",
        passwd_path.display(),
        passwd_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_sources(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut sources = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let source = line.split('#').next().unwrap_or("").trim();
        if source.is_empty() {
            continue;
        }
        check_source_name(source)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?;
        if !sources.iter().any(|s| s == source) {
            sources.push(source.to_string());
        }
    }
    Ok(sources)
}

/// 128 random bits as 32 hex digits: typed by no one, so length beats memorability.
fn random_password() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Written readable by its owner only, from the first byte.
fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
