//! The binary behind a closed pipe (`mofo … | head`): it stops as Unix
//! tools do, without a panic or a backtrace.

#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_the_process_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};

    // A pipe whose reading end is closed before the child starts, so its
    // first write to stdout meets a broken pipe however fast it runs.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_mofo"))
        .args(["forgetting", "--print-config"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run mofo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing on stderr, got: {stderr}");
    // Ended by SIGPIPE (13), as `cat` or `seq` would be.
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}
