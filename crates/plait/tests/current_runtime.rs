//! Reaching the runtime from inside a task of any strand (`Runtime::current`, `plait::spawn`),
//! a clear error outside one, timers made anywhere (`plait::sleep`, `plait::timeout`), and
//! a spawn that waits at the queue bound saying so.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use plait::{Error, Runtime, Strand};

plait::test_worker!();

/// Whether a runtime is reachable from inside a worker process.
#[plait::task(name = "current_runtime.in_worker")]
fn in_worker(_: ()) -> bool {
    Runtime::try_current().is_some()
}

fn named(name: &str) -> Runtime {
    Runtime::builder()
        .threads(2)
        .thread_name(name)
        .build()
        .unwrap()
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}

#[test]
fn a_task_of_each_strand_finds_its_own_runtime() {
    let rt = named("home");
    // From a thread task: spawn more without a captured clone.
    let from_thread = rt.spawn(|| Runtime::current().map(|rt| rt.spawn(thread_name).join()));
    assert!(
        from_thread
            .join()
            .unwrap()
            .unwrap()
            .unwrap()
            .starts_with("home-")
    );
    // From a coroutine.
    let from_coroutine = rt.spawn_async(async { plait::spawn(thread_name).await });
    assert!(from_coroutine.join().unwrap().unwrap().starts_with("home-"));
    // From a blocking call on the coroutine strand.
    let blocking = rt.spawn_on(Strand::Coroutine, || Runtime::try_current().is_some());
    assert!(blocking.join().unwrap());
    // From a future in block_on, on this thread; and not after it.
    assert!(rt.block_on(async { Runtime::try_current().is_some() }));
    assert!(
        Runtime::try_current().is_none(),
        "block_on put back what was here"
    );
    // From a spare thread standing in for a pool thread that waits.
    let nested = rt.spawn(|| {
        let inner: Vec<_> = (0..8)
            .map(|_| plait::spawn(|| Runtime::try_current().is_some()))
            .collect();
        inner
            .into_iter()
            .map(|h| h.join())
            .collect::<Result<Vec<bool>, _>>()
    });
    assert!(
        nested
            .join()
            .unwrap()
            .unwrap()
            .into_iter()
            .all(|found| found)
    );
}

#[test]
fn two_runtimes_keep_their_tasks_apart() {
    let (a, b) = (named("alpha"), named("beta"));
    let from_a = a.spawn(|| plait::spawn(thread_name).join());
    let from_b = b.spawn_async(async { plait::spawn_async(async { thread_name() }).await });
    assert!(from_a.join().unwrap().unwrap().starts_with("alpha-"));
    assert!(from_b.join().unwrap().unwrap().starts_with("beta-"));
}

#[test]
fn outside_a_runtime_the_error_says_so() {
    let error = Runtime::current().err().unwrap();
    assert!(matches!(error, Error::NoRuntime));
    assert!(
        error.to_string().contains("not inside a plait runtime"),
        "{error}"
    );
    assert!(matches!(plait::spawn(|| 1).join(), Err(Error::NoRuntime)));
    assert!(matches!(
        plait::spawn_async(async { 1 }).join(),
        Err(Error::NoRuntime)
    ));
    // A thread of the program's own, beside a runtime, is outside it too.
    let _rt = named("beside");
    let own = std::thread::spawn(|| Runtime::try_current().is_none());
    assert!(own.join().unwrap());
}

#[test]
fn a_worker_process_has_no_runtime_of_the_parent() {
    let rt = Runtime::new().unwrap();
    assert!(!rt.spawn_process(in_worker::task(), ()).join().unwrap());
}

/// Polls `future` to its end on this thread, waking by unparking it: an executor with no
/// timer and no runtime.
fn block_on_bare<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

#[test]
fn a_timer_made_outside_the_runtime_works_and_never_panics() {
    let rt = Runtime::new().unwrap();
    // Made on this thread, which no runtime started: tokio's sleep would panic here.
    let nap = plait::sleep(Duration::from_millis(30));
    let started = Instant::now();
    rt.spawn_async(nap).join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    let late = plait::timeout(
        Duration::from_millis(10),
        plait::sleep(Duration::from_secs(5)),
    );
    assert!(matches!(
        rt.spawn_async(late).join().unwrap(),
        Err(Error::TimedOut)
    ));
    // Polled by an executor with no timer at all.
    let started = Instant::now();
    block_on_bare(plait::sleep(Duration::from_millis(30)));
    assert!(started.elapsed() >= Duration::from_millis(30));
    let outside = block_on_bare(plait::timeout(Duration::from_millis(10), async { 1 }));
    assert!(matches!(outside, Err(Error::NoRuntime)));
}

/// What `tracing` writes, kept.
#[derive(Clone, Default)]
struct Said(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Said {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_spawn_waiting_at_the_queue_bound_says_which_bound_and_how_to_raise_it() {
    let said = Said::default();
    let writer = said.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = Runtime::builder()
        .threads(1)
        .queue_bound(1)
        .build()
        .unwrap();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let holder = rt.spawn(move || {
        let _ = gate.recv();
    });
    // Releases the slot only once the warning is out: the spawn below waits till then.
    let said_too = said.clone();
    let releaser = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&said_too.0.lock().unwrap()).contains("queue bound") {
            assert!(Instant::now() < deadline, "no warning");
            std::thread::sleep(Duration::from_millis(20));
        }
        release.send(()).unwrap();
    });
    let started = Instant::now();
    let waited = rt.spawn(|| 7);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited for room"
    );
    releaser.join().unwrap();
    holder.join().unwrap();
    assert_eq!(waited.join().unwrap(), 7);
    let text = String::from_utf8_lossy(&said.0.lock().unwrap()).into_owned();
    assert!(text.contains("thread strand"), "{text}");
    assert!(
        text.contains("Builder::queue_bound") && text.contains("try_spawn"),
        "{text}"
    );
    assert_eq!(
        text.matches("a spawn has waited").count(),
        1,
        "said once: {text}"
    );
}
