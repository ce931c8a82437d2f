//! The Redis store's connection, and what it says when it fails: a wrong URL, a refused
//! password, TLS with a private CA, a server that goes away and comes back, and another
//! program's keys on the same server, which it never touches.

mod common;

use std::time::{Duration, Instant};

use common::{RedisNamespace, RedisServer, TempFolder, redis_url};
use plait_queue::{Completion, ErrorKind, NewTask, Outcome, QueueError, RedisStore, State, Store};

#[test]
fn a_server_that_is_not_there_is_named_without_its_password() {
    // Needs no server: it checks what is said when there is none.
    // Port 1: nothing listens there.
    let error = RedisStore::open("redis://:hunter2@127.0.0.1:1/0")
        .err()
        .unwrap();
    assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");
    let said = error.to_string();
    assert!(said.contains("redis://:****@127.0.0.1:1/0"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");
    assert!(said.contains("is it running"), "{said}");

    let error = RedisStore::open("redis://127.0.0.1:notaport")
        .err()
        .unwrap();
    assert!(matches!(error, QueueError::Unreachable { .. }), "{error}");
}

#[test]
fn a_refused_password_is_said_without_the_password() {
    if !common::program_here("redis-server") {
        return;
    }
    let server = RedisServer::start(&["--requirepass", "s3cret-pass"]);
    let wrong = format!("redis://:not-it@127.0.0.1:{}", server.port);
    let error = RedisStore::open(&wrong).err().unwrap();
    let said = error.to_string();
    assert!(!said.contains("not-it"), "{said}");
    assert!(
        said.contains(&format!(":****@127.0.0.1:{}", server.port)),
        "{said}"
    );
    assert!(
        said.to_lowercase().contains("password") || said.contains("WRONGPASS"),
        "{said}"
    );
    let right = format!("redis://:s3cret-pass@127.0.0.1:{}", server.port);
    let store = RedisStore::open(&right).unwrap();
    let id = store.enqueue(&NewTask::new(b"x".to_vec())).unwrap().id;
    assert_eq!(store.get(id).unwrap().unwrap().state, State::Queued);
}

/// A private CA, and a certificate it signed for 127.0.0.1, made with the `openssl`
/// command: `(ca.pem, server.pem, server.key)`.
fn certificates(folder: &TempFolder) -> [String; 3] {
    let at = |name: &str| folder.path().join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let made = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed (the TLS test makes its certificates with it)");
        assert!(made.success(), "openssl {args:?}");
    };
    let (ca, ca_key) = (at("ca.pem"), at("ca.key"));
    let (cert, key, request, extensions) = (
        at("server.pem"),
        at("server.key"),
        at("server.csr"),
        at("server.ext"),
    );
    let rsa = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &rsa,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=plait test CA",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &rsa,
            &["-subj", "/CN=127.0.0.1", "-keyout", &key, "-out", &request],
        ]
        .concat(),
    );
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &request,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        &cert,
        "-extfile",
        &extensions,
    ]);
    [ca, cert, key]
}

#[test]
fn tls_to_a_server_with_a_private_ca() {
    if !common::program_here("redis-server") || !common::program_here("openssl") {
        return;
    }
    let folder = TempFolder::new("redis-tls");
    let [ca, cert, key] = certificates(&folder);
    let server = RedisServer::start(&[
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let pem = std::fs::read(&ca).unwrap();
    let store = RedisStore::builder(&url).tls_ca(pem).build().unwrap();
    let id = store.enqueue(&NewTask::new(b"x".to_vec())).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, Duration::from_secs(30))
        .unwrap()
        .remove(0);
    store
        .complete(&[(id, lease.attempt, Outcome::Succeeded(b"ok".to_vec()))])
        .unwrap();
    assert_eq!(
        store.get(id).unwrap().unwrap().result.as_deref(),
        Some(&b"ok"[..])
    );

    // Without the CA, the server's certificate is not trusted.
    let error = RedisStore::open(&url).err().unwrap();
    assert!(error.to_string().contains(&url), "{error}");
    // Plain text to a TLS port fails too, and says where.
    let plain = RedisStore::builder(format!("redis://127.0.0.1:{}", server.port))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .err()
        .unwrap();
    assert!(plain.to_string().contains("127.0.0.1"), "{plain}");
}

#[test]
fn a_server_that_goes_away_is_said_and_the_store_reconnects_when_it_is_back() {
    if !common::program_here("redis-server") {
        return;
    }
    let mut server = RedisServer::start(&["--appendonly", "no"]);
    let store = RedisStore::open(&format!("redis://127.0.0.1:{}", server.port)).unwrap();
    let id = store.enqueue(&NewTask::new(b"x".to_vec())).unwrap().id;
    // A wait keeps its connection for the next one: that one breaks with the server.
    let waited = store.wait_finished(id, Duration::from_millis(20)).unwrap();
    assert_eq!(waited.state, State::Queued);
    server.kill();
    let error = store.get(id).err().unwrap();
    assert_eq!(error.kind(), ErrorKind::Unreachable, "{error}");
    assert!(
        error.to_string().contains(&server.port.to_string()),
        "{error}"
    );
    server.restart();
    // The server kept nothing; what matters is that the store talks to it again, within
    // its reconnect backoff (2 s at most).
    let started = Instant::now();
    loop {
        match store.get(id) {
            Ok(found) => {
                assert_eq!(found, None, "a server without persistence starts empty");
                break;
            }
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "not reconnected: {error}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let again = store.enqueue(&NewTask::new(b"y".to_vec())).unwrap().id;
    // The kept connection broke with the server: the wait makes a new one.
    let waited = store
        .wait_finished(again, Duration::from_millis(20))
        .unwrap();
    assert_eq!(waited.state, State::Queued);
}

#[test]
fn a_namespace_that_cannot_prefix_keys_is_refused_by_name() {
    // Refused before any connection: no server needed.
    for bad in ["", "has space", "brace{tag}"] {
        let error = RedisStore::builder("redis://127.0.0.1:1")
            .namespace(bad)
            .build()
            .err()
            .unwrap();
        assert_eq!(error.kind(), ErrorKind::BadInput, "{error}");
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
}

#[test]
fn another_programs_keys_on_the_same_server_are_never_touched() {
    if !common::redis_answers() {
        return;
    }
    let namespace = RedisNamespace::new("neighbours");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    // Keys an application of its own keeps, some close to plait's in name.
    let theirs = [
        format!("{}-app:jobs", namespace.0),
        format!("{}x:{{default}}:counts", namespace.0),
        "plait".to_owned() + &format!("-not-ours-{}", std::process::id()),
    ];
    for key in &theirs {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("theirs")
            .query(&mut conn)
            .unwrap();
    }
    let store = RedisStore::builder(redis_url())
        .namespace(namespace.0.clone())
        .build()
        .unwrap();
    let ids: Vec<_> = (0..5)
        .map(|i| {
            store
                .enqueue(&NewTask::new(vec![i]).result_ttl(Duration::ZERO))
                .unwrap()
                .id
        })
        .collect();
    for lease in store
        .reserve("w", &["default"], 3, Duration::from_secs(30))
        .unwrap()
    {
        store
            .complete(&[(lease.id, lease.attempt, Outcome::Succeeded(Vec::new()))])
            .unwrap();
    }
    store.purge(None).unwrap();
    store.expire_results().unwrap();
    store.requeue_dead(None).unwrap();
    store.reclaim_expired().unwrap();
    assert!(store.get(ids[0]).unwrap().is_none());
    for key in &theirs {
        let value: Option<String> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
        assert_eq!(value.as_deref(), Some("theirs"), "{key} was touched");
        let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
    }
}

#[test]
fn an_id_counter_that_went_back_overwrites_no_task() {
    if !common::redis_answers() {
        return;
    }
    let namespace = RedisNamespace::new("ids-back");
    let open = || {
        RedisStore::builder(redis_url())
            .namespace(namespace.0.clone())
            .build()
            .unwrap()
    };
    let first = open().enqueue(&NewTask::new(b"first".to_vec())).unwrap().id;
    // As a failover that lost the last increments would leave it.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("DEL")
        .arg(format!("{}:ids", namespace.0))
        .query(&mut conn)
        .unwrap();
    let error = open()
        .enqueue(&NewTask::new(b"second".to_vec()))
        .unwrap_err();
    assert!(
        error.to_string().contains("id counter went back"),
        "{error}"
    );
    let kept = open().get(first).unwrap().unwrap();
    assert_eq!(kept.payload, b"first", "the first task is untouched");
    assert_eq!(open().queues().unwrap()[0].ready, 1);
}

#[test]
fn a_server_that_forgot_its_scripts_still_completes_and_reserves_in_one_call() {
    if !common::program_here("redis-server") {
        return;
    }
    let server = RedisServer::start(&["--appendonly", "no"]);
    let url = format!("redis://127.0.0.1:{}", server.port);
    let store = RedisStore::open(&url).unwrap();
    let first = store.enqueue(&NewTask::new(b"1".to_vec())).unwrap().id;
    let second = store.enqueue(&NewTask::new(b"2".to_vec())).unwrap().id;
    let lease = store
        .reserve("w", &["default"], 1, Duration::from_secs(30))
        .unwrap()
        .remove(0);
    // As a restart without persistence of scripts would leave it: the completion and the
    // reserve go in one round trip of script hashes the server no longer knows.
    let client = redis::Client::open(url.as_str()).unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut client.get_connection().unwrap())
        .unwrap();
    let (done, leases) = store
        .complete_and_reserve(
            &[(first, lease.attempt, Outcome::Succeeded(b"one".to_vec()))],
            "w",
            &["default"],
            1,
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(done, [Completion::Recorded(State::Succeeded)]);
    let handed: Vec<_> = leases.unwrap().iter().map(|lease| lease.id).collect();
    assert_eq!(handed, [second]);
    assert_eq!(store.get(first).unwrap().unwrap().state, State::Succeeded);
}
