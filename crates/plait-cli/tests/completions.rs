//! `plait completions SHELL`: a script the shell accepts, that knows plait's commands.

use std::process::Command;

fn completions(shell: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_plait"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_bash_script_parses_and_knows_the_commands_and_their_flags() {
    let script = completions("bash");
    for word in [
        "run",
        "worker",
        "workers",
        "submit",
        "--keep-going",
        "--queue",
    ] {
        assert!(script.contains(word), "no {word} in the script");
    }
    let dir = std::env::temp_dir().join(format!("plait-completions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plait.bash");
    std::fs::write(&file, &script).unwrap();
    // `bash -n` reads the script without running it: a syntax error fails it.
    let checked = Command::new("bash").arg("-n").arg(&file).status().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(checked.success());
}

#[test]
fn every_shell_clap_knows_gets_a_script_and_an_unknown_one_is_refused() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(completions(shell).contains("plait"), "{shell}");
    }
    let output = Command::new(env!("CARGO_BIN_EXE_plait"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tcsh"));
}
