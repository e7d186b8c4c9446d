//! Runs a test body in a child process under an address-space and CPU-time limit, so that an
//! abort, a stack overflow or a runaway allocation fails that one test instead of the run.
//!
//! Usage, in a `#[test] fn NAME()`: `isolated("NAME", 2 << 30, || { ... })`. The test binary
//! re-runs itself with `NAME --exact` and `DEBERTA_ISOLATED=NAME`; the child runs the body.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_VAR: &str = "DEBERTA_ISOLATED";

/// Runs `body` in a child limited to `max_address_space` bytes of virtual memory and 120 s of
/// CPU; fails when the child fails, dies on a signal or runs past 180 s of wall time.
pub fn isolated(name: &str, max_address_space: u64, body: impl FnOnce()) {
    if std::env::var(CHILD_VAR).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, name)
        .env("RAYON_NUM_THREADS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit(&mut cmd, max_address_space);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            child.kill().ok();
            panic!("{name}: still running after 180 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        status.success() && stdout.contains("1 passed"),
        "{name}: child {status:?} in {:?} (limit {max_address_space} bytes of address space)",
        started.elapsed()
    );
}

#[cfg(unix)]
fn limit(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let set = |resource, value: u64| {
                let lim = libc::rlimit {
                    rlim_cur: value as libc::rlim_t,
                    rlim_max: value as libc::rlim_t,
                };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            };
            set(libc::RLIMIT_AS, bytes)?;
            set(libc::RLIMIT_CPU, 120)?;
            // No core files from an expected crash.
            set(libc::RLIMIT_CORE, 0)
        });
    }
}

#[cfg(not(unix))]
fn limit(_cmd: &mut Command, _bytes: u64) {}
