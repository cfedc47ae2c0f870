//! The `bulwark-descriptor` binary writes the descriptor set and explains bad
//! arguments.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_bulwark-descriptor");

#[test]
fn descriptor_binary_writes_the_descriptor_set() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("envoy").join("bulwark.pb");
    let output = Command::new(BINARY)
        .arg(&path)
        .output()
        .expect("bulwark-descriptor runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bulwark-descriptor failed: {stderr}"
    );
    let written = std::fs::read(&path).expect("the descriptor file exists");
    assert_eq!(
        written,
        bulwark_proto::FILE_DESCRIPTOR_SET,
        "the file must hold FILE_DESCRIPTOR_SET byte for byte"
    );
    assert!(
        stderr.contains(&path.display().to_string())
            && stderr.contains(&format!("{} bytes", written.len())),
        "stderr should name the path and the size, got: {stderr}"
    );
}

#[test]
fn descriptor_binary_rejects_missing_and_extra_arguments() {
    for args in [&[][..], &["a.pb", "b.pb"][..], &["--verbose"][..]] {
        let output = Command::new(BINARY)
            .args(args)
            .output()
            .expect("bulwark-descriptor runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "args {args:?} must be a usage error (exit 2); stderr: {stderr}"
        );
        assert!(
            stderr.contains("usage: bulwark-descriptor <output-file>"),
            "args {args:?}: stderr should show the usage, got: {stderr}"
        );
    }
}

#[test]
fn descriptor_binary_reports_an_unwritable_path() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(BINARY)
        .arg(dir.path())
        .output()
        .expect("bulwark-descriptor runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot write"),
        "stderr should say the file cannot be written, got: {stderr}"
    );
}
