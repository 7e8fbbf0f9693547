//! `switchboard demo --once`, the README's first command, run as a user would: it builds the
//! plugins, runs the hub, the Telegram simulator and the helpdesk, plays the script, and
//! reports; with the default Zendesk and with each `--helpdesk`.

use std::process::Command;

fn demo(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run switchboard demo");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn demo_once_sees_every_effect_and_says_ok() {
    let (code, stdout, stderr) = demo(&["--once"]);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("demo ok:"),
        "last line: {last}\n{stdout}\n{stderr}"
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // The transcript shows each step as it happened, both ways.
    for step in [
        "Aiko → bot:",
        "✓ Zendesk ticket #1",
        "agent replies on #1",
        "✓ bot → Aiko:",
        "internal note",
        "✓ new ticket #4",
    ] {
        assert!(
            stdout.contains(step),
            "the transcript shows {step:?}:\n{stdout}"
        );
    }
    assert!(
        last.contains("4 tickets") && last.contains("no duplicates"),
        "{last}"
    );
}

#[test]
fn demo_without_a_source_tree_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().to_str().expect("utf-8 temp path");
    let (code, stdout, stderr) = demo(&["--once", "--source-dir", source]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("demo FAILED:"), "last line: {last}");
    assert!(
        last.contains("not a Switchboard source tree") && last.contains("--source-dir"),
        "{last}"
    );
}

/// The same script against another helpdesk: the transcript names it and the summary is the
/// same, since the same effects were checked.
fn demo_against(helpdesk: &str, title: &str) {
    let (code, stdout, stderr) = demo(&["--once", "--helpdesk", helpdesk]);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("demo ok:"),
        "last line: {last}\n{stdout}\n{stderr}"
    );
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for step in [
        format!("✓ {title} ticket #"),
        format!("Scene 3: agents answer in {title}"),
        "internal note was not sent".to_string(),
        "new ticket #".to_string(),
    ] {
        assert!(
            stdout.contains(&step),
            "the transcript shows {step:?}:\n{stdout}"
        );
    }
    assert!(
        last.contains("4 tickets")
            && last.contains("10 comments")
            && last.contains("no duplicates"),
        "{last}"
    );
}

#[test]
fn demo_once_against_freshdesk() {
    demo_against("freshdesk", "Freshdesk");
}

#[test]
fn demo_once_against_salesforce_connects_with_oauth() {
    demo_against("salesforce", "Salesforce");
}

#[test]
fn demo_against_an_unknown_helpdesk_is_refused() {
    let (code, _, stderr) = demo(&["--once", "--helpdesk", "servicenow"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("zendesk") && stderr.contains("freshdesk") && stderr.contains("rt"),
        "names the choices: {stderr}"
    );
}
