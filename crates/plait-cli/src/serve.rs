//! `plait serve`, and the dashboard that `plait run --serve` starts beside a run: where it
//! listens, and who may ask it what.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use plait::Runtime;
use plait_web::Serving;
use plait_web::dashboard::{Dashboard, DashboardBuilder};

use crate::queue::Config;
use crate::queue::signals::Signals;

/// Where the dashboard listens unless told otherwise: this machine only.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:8700";

/// Who may reach a dashboard: shared by `plait serve` and `plait run --serve`.
#[derive(ClapArgs)]
pub(crate) struct Access {
    /// The token every request must carry (`Authorization: Bearer TOKEN`); required to
    /// serve beyond the loopback interface. PLAIT_TOKEN is better than the flag, which
    /// other users of the machine can read in the process list.
    #[arg(
        long,
        env = "PLAIT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Answer requests addressed to this host name too (repeat for more): by default,
    /// without a token, only loopback names (localhost, 127.0.0.1, [::1]) are answered.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
}

/// `plait serve`.
#[derive(ClapArgs)]
pub(crate) struct ServeArgs {
    /// Where to listen: ADDRESS:PORT (a port of 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_BIND)]
    bind: String,
    #[command(flatten)]
    access: Access,
}

pub(crate) fn run(args: &ServeArgs) -> Result<ExitCode, String> {
    let config = Config::here()?;
    let store = config.open()?;
    // Caught before the server says it listens: a signal then stops it in order.
    let signals = Signals::install()?;
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let dashboard = Dashboard::builder()
        .queue(store)
        .default_queue(config.queue.clone())
        .runtime(rt.clone());
    let serving = start(&rt, &args.bind, &args.access, dashboard)?;
    let signal = signals.wait();
    eprintln!("plait: {signal}: the dashboard stops once the requests in flight are answered");
    let stopped = serving.stop().map_err(|e| e.to_string());
    let _ = rt.shutdown(Duration::from_secs(5));
    stopped.map(|()| ExitCode::SUCCESS)
}

/// Starts `dashboard` on `rt`, listening on `bind`, and says where on standard error.
///
/// # Errors
///
/// An address that cannot be read or bound, an empty token, or an address beyond the
/// loopback interface without a token.
pub(crate) fn start(
    rt: &Runtime,
    bind: &str,
    access: &Access,
    mut dashboard: DashboardBuilder,
) -> Result<Serving, String> {
    let addrs: Vec<SocketAddr> = bind
        .to_socket_addrs()
        .map_err(|e| {
            format!("--bind {bind:?}: {e}; write it as ADDRESS:PORT, such as {DEFAULT_BIND}")
        })?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| format!("--bind {bind:?} names no address"))?;
    match access.token.as_deref() {
        Some(token) if token.trim().is_empty() => {
            return Err(
                "the token is empty, and would guard nothing: give one with --token or PLAIT_TOKEN"
                    .to_owned(),
            );
        }
        Some(token) => dashboard = dashboard.token(token.trim()),
        None if !addr.ip().is_loopback() => {
            return Err(format!(
                "--bind {bind} is beyond this machine's loopback interface, where anyone who can reach it could run commands through the queue: give a token (PLAIT_TOKEN=... or --token), or bind to 127.0.0.1"
            ));
        }
        None => {}
    }
    for host in &access.allow_hosts {
        dashboard = dashboard.allow_host(host.clone());
    }
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen on {addr}: {e}; choose another with --bind ADDR:PORT")
    })?;
    let serving = plait_web::serve(rt, listener, dashboard.build()).map_err(|e| e.to_string())?;
    eprintln!(
        "plait: the dashboard is on http://{}/",
        serving.local_addr()
    );
    Ok(serving)
}
