//! `hamstr completions SHELL`: a script for every shell clap_complete knows; the bash
//! one, sourced in a real bash, completes subcommands and options.

mod support;

use support::cli::{hamstr, stdout, text};

#[test]
fn every_shell_gets_a_script_naming_the_commands() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = hamstr().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}: {}", text(&out));
        let script = stdout(&out);
        for command in ["check", "run", "try", "test", "completions"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = hamstr().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// Completions as bash computes them for the words typed so far.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let script = stdout(&hamstr().args(["completions", "bash"]).output().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hamstr.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _hamstr hamstr '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_and_options() {
    assert_eq!(bash_completes(&["hamstr", "t"]), ["try", "test"]);
    assert_eq!(
        bash_completes(&["hamstr", "run", "--re"]),
        ["--record", "--replay"]
    );
    let formats = bash_completes(&["hamstr", "try", "f.hmr", "src", "--format", ""]);
    assert_eq!(formats, ["human", "json"]);
}
