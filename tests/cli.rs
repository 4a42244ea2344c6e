//! The binary's command line: `convert` on arbitrary bytes, exit codes, configuration errors
//! and `--check-config`.

use std::io::Write;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that exits before reading (a usage error) closes the pipe: not a failure here.
    if let Err(e) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mp-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn convert_reports_each_rejected_line_and_converts_the_rest() {
    let good = include_str!("fixtures/sample-metrics.jsonl")
        .lines()
        .next()
        .unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(good.as_bytes());
    input.extend_from_slice(b"\n\xff\xfe not utf-8 at all\n\n{\"metric\":{}}\n");
    input.extend_from_slice(good.as_bytes());
    input.extend_from_slice(b"\r\n");
    let mut cmd = bin();
    cmd.args(["convert", "--kind", "metrics"]);
    let out = run_with_stdin(cmd, &input);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let reports: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(reports.len(), 2, "{stderr}");
    assert!(reports[0].starts_with("line 2: invalid UTF-8"), "{stderr}");
    assert!(
        reports[1].starts_with("line 4: missing field `meta`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("4 messages: 2 converted, 2 rejected"),
        "{stderr}"
    );
}

#[test]
fn convert_of_a_missing_file_is_an_io_error() {
    let out = bin()
        .args(["convert", "--kind", "alarms", "/nonexistent/file"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/file"));
}

#[test]
fn convert_of_a_file_argument_matches_convert_of_the_same_bytes_on_stdin() {
    // The file argument is memory-mapped, stdin is read: both must give the same bytes.
    let mut text = String::new();
    for (i, line) in include_str!("fixtures/sample-metrics.jsonl")
        .lines()
        .enumerate()
    {
        text.push_str(line);
        text.push_str(if i % 5 == 0 { "\n\n" } else { "\n" });
        if i % 9 == 0 {
            text.push_str(&line[..line.len() / 3]);
            text.push('\n');
        }
    }
    text.push_str(r#"{"metric":"#);
    let path = temp("mapped.jsonl", &text);
    let mut from_file = bin();
    from_file.args(["convert", "--kind", "metrics"]).arg(&path);
    let from_file = from_file.output().unwrap();
    let mut from_stdin = bin();
    from_stdin.args(["convert", "--kind", "metrics"]);
    let from_stdin = run_with_stdin(from_stdin, text.as_bytes());
    assert!(from_file.status.success() && from_stdin.status.success());
    assert_eq!(from_file.stdout, from_stdin.stdout);
    let stderr = String::from_utf8_lossy(&from_file.stderr);
    assert_eq!(stderr, String::from_utf8_lossy(&from_stdin.stderr));
    assert!(
        stderr.contains("cut off") && from_file.stdout.len() > 10_000,
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2_naming_the_value() {
    let out = bin()
        .args(["convert", "--kind", "events"])
        .output()
        .unwrap();
    // clap's usage-error code; a panic would exit 101.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'events'"), "{err}");
}

#[test]
fn config_error_names_file_line_and_key_and_exits_2() {
    let p = temp(
        "bad.toml",
        "[kafka]\nuri = \"k:9092\"\n[influxdb]\nport = \"eighty\"\n",
    );
    let out = bin().arg("--config-file").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4: port:", p.display())), "{err}");
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let p = temp(
        "ok.conf",
        "[kafka]\nuri = k1:9092\n[influxdb]\npassword = hunter2\n[zookeeper]\nuri = z:2181\n",
    );
    let out = bin()
        .arg("--config-file")
        .arg(&p)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("uri = \"k1:9092\""), "{stdout}");
    assert!(stdout.contains("password = \"***\""), "{stdout}");
    assert!(!stdout.contains("hunter2"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("zookeeper.uri"));
}

#[test]
fn convert_line_protocol_v3_doubles_backslashes_and_keeps_a_trailing_one() {
    let msg = br#"{"metric":{"name":"m","dimensions":{"path":"C:\\"},"timestamp":1,"value":1},"meta":{"tenantId":"t","region":"r"}}
"#;
    let mut cmd = bin();
    cmd.args(["convert", "--kind", "metrics", "--line-protocol", "v3"]);
    let out = run_with_stdin(cmd, msg);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "m,_region=r,_tenant_id=t,path=C:\\\\ value=1.0,value_meta=\"{}\" 1\n"
    );
    // The default (v1) cannot write it and says why.
    let mut cmd = bin();
    cmd.args(["convert", "--kind", "metrics"]);
    let out = run_with_stdin(cmd, msg);
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("value of dimension \"path\" ends with a backslash")
    );
    let mut cmd = bin();
    cmd.args(["convert", "--kind", "metrics", "--line-protocol", "v2"]);
    assert_eq!(run_with_stdin(cmd, msg).status.code(), Some(2));
}
