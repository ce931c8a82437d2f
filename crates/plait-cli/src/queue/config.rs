//! Where the queue is and how it is kept: `plait.toml`'s `[queue]` table, then `PLAIT_*`
//! variables over it, then `--broker`, each checked with an error that names the key.
//! Without a broker the queue is the embedded SQLite file; with `broker =
//! "redis://..."` it is on that Redis server, shared by workers on any machine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plait_queue::{Durability, RedisStore, SqliteStore, Store};
use serde::Deserialize;

/// The file plait looks for in the current directory.
const FILE: &str = "plait.toml";

/// `--broker`, given before any command reads the configuration.
static BROKER_FLAG: OnceLock<String> = OnceLock::new();

/// Whether `--broker` was given: `plait run` then sends its tasks to the queue.
pub(crate) fn broker_flag_given() -> bool {
    BROKER_FLAG.get().is_some()
}

/// Takes `--broker URL` from the command line: it wins over `PLAIT_BROKER` and
/// `plait.toml`.
pub(crate) fn set_broker_flag(url: Option<String>) {
    if let Some(url) = url {
        let _ = BROKER_FLAG.set(url);
    }
}

/// The queue's settings, with their defaults.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    /// The embedded store's file.
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
    /// The queue `submit` uses and `worker` serves when none is named.
    pub(crate) queue: String,
    pub(crate) payload_limit: usize,
    /// The largest result kept: a larger one fails its task, saying so.
    pub(crate) result_limit: usize,
    /// A Redis URL (`redis://` or `rediss://`), or `None` for the embedded file.
    pub(crate) broker: Option<String>,
    /// What the broker's keys start with, so that several queues systems (or tests)
    /// can share a server.
    pub(crate) namespace: String,
    /// With `rediss://`, a CA certificate (PEM) to trust instead of the system's roots.
    pub(crate) tls_ca: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: PathBuf::from(".plait/queue.db"),
            durability: Durability::Process,
            queue: "default".to_owned(),
            payload_limit: plait_queue::DEFAULT_PAYLOAD_LIMIT,
            result_limit: plait_queue::DEFAULT_RESULT_LIMIT,
            broker: None,
            namespace: "plait".to_owned(),
            tls_ca: None,
        }
    }
}

/// `plait.toml`, as written: every key optional, none unknown.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    queue: Option<QueueTable>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct QueueTable {
    path: Option<PathBuf>,
    durability: Option<String>,
    default_queue: Option<String>,
    payload_limit: Option<usize>,
    result_limit: Option<usize>,
    /// A Redis URL: the queue is on that server.
    broker: Option<String>,
    namespace: Option<String>,
    tls_ca: Option<PathBuf>,
}

impl Config {
    /// The settings for a run in `dir`: the defaults, then `dir/plait.toml`, then the
    /// `PLAIT_*` variables in `env`.
    pub(crate) fn load(dir: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let mut config = Config {
            path: dir.join(Config::default().path),
            ..Config::default()
        };
        let file = dir.join(FILE);
        if let Ok(text) = std::fs::read_to_string(&file) {
            let parsed: File = toml::from_str(&text)
                .map_err(|error| format!("{}: {}", file.display(), error.message()))?;
            if let Some(table) = parsed.queue {
                let at = |key: &str| format!("{} [queue] {key}", file.display());
                if let Some(path) = table.path {
                    config.path = dir.join(path);
                }
                if let Some(durability) = table.durability {
                    config.durability = durability_from(&durability, &at("durability"))?;
                }
                if let Some(queue) = table.default_queue {
                    config.queue = queue_from(queue, &at("default_queue"))?;
                }
                if let Some(limit) = table.payload_limit {
                    config.payload_limit = limit;
                }
                if let Some(limit) = table.result_limit {
                    config.result_limit = limit;
                }
                if let Some(url) = table.broker {
                    config.broker = Some(broker_from(url, &at("broker"))?);
                }
                if let Some(ca) = table.tls_ca {
                    config.tls_ca = Some(dir.join(ca));
                }
                if let Some(namespace) = table.namespace {
                    config.namespace = namespace_from(namespace, &at("namespace"))?;
                }
            }
        }
        if let Some(path) = env("PLAIT_QUEUE_PATH") {
            config.path = dir.join(path);
        }
        if let Some(durability) = env("PLAIT_DURABILITY") {
            config.durability = durability_from(&durability, "PLAIT_DURABILITY")?;
        }
        if let Some(queue) = env("PLAIT_QUEUE") {
            config.queue = queue_from(queue, "PLAIT_QUEUE")?;
        }
        if let Some(limit) = env("PLAIT_PAYLOAD_LIMIT") {
            config.payload_limit = limit.trim().parse().map_err(|_| {
                format!("PLAIT_PAYLOAD_LIMIT={limit:?} is not a number of bytes (say 1048576)")
            })?;
        }
        if let Some(limit) = env("PLAIT_RESULT_LIMIT") {
            config.result_limit = limit.trim().parse().map_err(|_| {
                format!("PLAIT_RESULT_LIMIT={limit:?} is not a number of bytes (say 8388608)")
            })?;
        }
        if let Some(ca) = env("PLAIT_TLS_CA") {
            config.tls_ca = Some(dir.join(ca));
        }
        if let Some(namespace) = env("PLAIT_NAMESPACE") {
            config.namespace = namespace_from(namespace, "PLAIT_NAMESPACE")?;
        }
        if let Some(url) = env("PLAIT_BROKER") {
            config.broker = Some(broker_from(url, "PLAIT_BROKER")?);
        }
        if let Some(url) = BROKER_FLAG.get() {
            config.broker = Some(broker_from(url.clone(), "--broker")?);
        }
        Ok(config)
    }

    /// The settings for this process: its directory and environment.
    pub(crate) fn here() -> Result<Config, String> {
        let dir = std::env::current_dir()
            .map_err(|error| format!("cannot read the current directory: {error}"))?;
        Config::load(&dir, |key| std::env::var(key).ok())
    }

    /// Opens the store these settings name: the broker's, or the embedded file.
    pub(crate) fn open(&self) -> Result<Arc<dyn Store>, String> {
        if let Some(url) = &self.broker {
            let mut builder = RedisStore::builder(url.as_str())
                .namespace(self.namespace.clone())
                .payload_limit(self.payload_limit)
                .result_limit(self.result_limit);
            if let Some(ca) = &self.tls_ca {
                let pem = std::fs::read(ca)
                    .map_err(|error| format!("the TLS CA certificate {}: {error}", ca.display()))?;
                builder = builder.tls_ca(pem);
            }
            let store = builder.build().map_err(|error| error.to_string())?;
            return Ok(Arc::new(store));
        }
        let store = SqliteStore::builder(&self.path)
            .durability(self.durability)
            .payload_limit(self.payload_limit)
            .result_limit(self.result_limit)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Arc::new(store))
    }
}

impl Config {
    /// Where the queue is, for messages: the broker's URL (without its password), or
    /// the file.
    pub(crate) fn place(&self) -> String {
        match &self.broker {
            Some(url) => plait_queue::redacted_url(url),
            None => self.path.display().to_string(),
        }
    }
}

/// A namespace for the broker's keys: 1 to 64 letters, digits, `-`, `_` or `.`.
fn namespace_from(value: String, key: &str) -> Result<String, String> {
    let fine = (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(value)
    } else {
        Err(format!(
            "{key} = {value:?}: a namespace is 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A broker URL, checked for its scheme (the server is reached when the store opens).
fn broker_from(url: String, key: &str) -> Result<String, String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(url)
    } else {
        Err(format!(
            "{key}: {:?} is not a broker URL: plait's broker is Redis, \
             redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)",
            plait_queue::redacted_url(&url)
        ))
    }
}

fn durability_from(value: &str, key: &str) -> Result<Durability, String> {
    match value.trim() {
        "process" => Ok(Durability::Process),
        "fsync" => Ok(Durability::Fsync),
        other => Err(format!(
            "{key} = {other:?}: use \"process\" (survives any process's death; the default) \
             or \"fsync\" (survives a power loss too, slower)"
        )),
    }
}

fn queue_from(value: String, key: &str) -> Result<String, String> {
    plait_queue::check_queue_name(&value)
        .map(|()| value)
        .map_err(|error| format!("{key}: {error}"))
}

/// Reads a moment: `2026-12-24T18:00:00Z` (RFC 3339, in UTC) or `@1798135200` (seconds
/// since the Unix epoch).
pub(crate) fn moment(text: &str) -> Result<std::time::SystemTime, String> {
    let bad = || {
        format!(
            "{text:?} is not a time: write it as 2026-12-24T18:00:00Z (UTC) or @SECONDS since \
             the Unix epoch"
        )
    };
    let text = text.trim();
    let seconds: i64 = if let Some(epoch) = text.strip_prefix('@') {
        epoch.parse().map_err(|_| bad())?
    } else {
        let text = text.strip_suffix('Z').ok_or_else(bad)?;
        let (date, time) = text.split_once('T').ok_or_else(bad)?;
        let numbers = |part: &str, sep: char| -> Result<Vec<i64>, String> {
            part.split(sep)
                .map(|n| n.parse::<i64>().map_err(|_| bad()))
                .collect()
        };
        let (d, t) = (numbers(date, '-')?, numbers(time, ':')?);
        let [year, month, day] = <[i64; 3]>::try_from(d).map_err(|_| bad())?;
        let [hour, minute, second] = <[i64; 3]>::try_from(t).map_err(|_| bad())?;
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(bad());
        }
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
    };
    let seconds = u64::try_from(seconds).map_err(|_| bad())?;
    Ok(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_defaults_stand_without_a_file_and_the_variables_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("plait-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config::load(&dir, no_env).unwrap();
        assert_eq!(config.path, dir.join(".plait/queue.db"));
        assert_eq!(config.durability, Durability::Process);
        std::fs::write(
            dir.join(FILE),
            "[queue]\npath = \"q/jobs.db\"\ndurability = \"fsync\"\ndefault_queue = \"mail\"\n",
        )
        .unwrap();
        let config = Config::load(&dir, no_env).unwrap();
        assert_eq!(config.path, dir.join("q/jobs.db"));
        assert_eq!(
            (config.durability, config.queue.as_str()),
            (Durability::Fsync, "mail")
        );
        let config = Config::load(&dir, |key| {
            (key == "PLAIT_QUEUE").then(|| "video".to_owned())
        })
        .unwrap();
        assert_eq!(config.queue, "video");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_setting_is_named_by_its_key() {
        let dir = std::env::temp_dir().join(format!("plait-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(FILE), "[queue]\ndurability = \"sometimes\"\n").unwrap();
        let error = Config::load(&dir, no_env).unwrap_err();
        assert!(
            error.contains("[queue] durability = \"sometimes\""),
            "{error}"
        );
        std::fs::write(dir.join(FILE), "[queue]\npaht = \"x\"\n").unwrap();
        let error = Config::load(&dir, no_env).unwrap_err();
        assert!(error.contains("paht"), "{error}");
        std::fs::remove_file(dir.join(FILE)).unwrap();
        let error = Config::load(&dir, |key| {
            (key == "PLAIT_QUEUE").then(|| "no spaces".to_owned())
        })
        .unwrap_err();
        assert!(error.starts_with("PLAIT_QUEUE: "), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn moments_read_as_utc_or_epoch_seconds() {
        let at = |text| {
            moment(text)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        assert_eq!(at("1970-01-01T00:00:00Z"), 0);
        assert_eq!(at("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(at("2026-12-24T18:00:00Z"), 1_798_135_200);
        assert_eq!(at("@1798135200"), 1_798_135_200);
        assert!(
            moment("tomorrow")
                .unwrap_err()
                .contains("2026-12-24T18:00:00Z")
        );
        assert!(moment("2026-13-01T00:00:00Z").is_err());
    }
}
