//! The Lua scripts that move tasks from state to state: each runs atomically on the
//! server, over one queue's keys (see `lua/common.lua`, prepended to each).

use redis::Script;

/// A script: `common.lua`, then the file's body run as a function, then `settle()`, so
/// that the writes the body gathered are made whichever way it returns.
macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\nlocal function body()\n",
            include_str!(concat!("lua/", $file)),
            "\nend\nlocal answer = body()\nsettle()\nreturn answer\n"
        ))
    };
}

/// Loaded once per store handle; `redis::Script` sends a script's hash, and its text only
/// when the server does not know it (after a restart, say).
pub(super) struct Scripts {
    pub(super) enqueue: Script,
    pub(super) reserve: Script,
    pub(super) heartbeat: Script,
    pub(super) complete: Script,
    pub(super) reclaim: Script,
    pub(super) cancel: Script,
    pub(super) requeue_dead: Script,
    pub(super) purge: Script,
    pub(super) expire: Script,
    pub(super) take_token: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            enqueue: script!("enqueue.lua"),
            reserve: script!("reserve.lua"),
            heartbeat: script!("heartbeat.lua"),
            complete: script!("complete.lua"),
            reclaim: script!("reclaim.lua"),
            cancel: script!("cancel.lua"),
            requeue_dead: script!("requeue_dead.lua"),
            purge: script!("purge.lua"),
            expire: script!("expire.lua"),
            take_token: script!("take_token.lua"),
        }
    }
}
