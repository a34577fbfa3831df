"""
The Rust handlers the tests compile and deploy, in one place: the smallest
one (``HELLO``), the isolation probe, and the service examples of docs/.
"""

import os

from tests.support.harness import ROOT

HELLO = """use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
"""

# One binary for every test: what it does depends on the last path segment.
PROBE = r"""use rust_edge_gateway_sdk::prelude::*;
use std::os::unix::process::CommandExt;

fn pause_forever() -> ! {
    loop {
        unsafe { libc::pause(); }
    }
}

/// Which worker this is, as the tests can tell from outside: the inode of its pid namespace.
fn worker_id() -> u64 {
    let link = std::fs::read_link("/proc/self/ns/pid").unwrap();
    link.to_string_lossy().trim_start_matches("pid:[").trim_end_matches(']').parse().unwrap()
}

fn handle(req: Request) -> Response {
    let what = req.path_param("what").cloned().unwrap_or_default();
    match what.as_str() {
        // Reserve `mb` MiB of address space and touch it once.
        "alloc" => {
            let mb: usize = req.query_param_as("mb").unwrap_or(2048);
            let mut block: Vec<u8> = Vec::with_capacity(mb * 1024 * 1024);
            block.push(1);
            Response::ok(json!({"allocated_mb": mb, "first": block[0]}))
        }
        // A grandchild that keeps every descriptor of the worker (its frame
        // pipes included: fork copies close-on-exec ones too) and sleeps.
        "fork" => {
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                pause_forever();
            }
            Response::ok(json!({"grandchild": pid}))
        }
        // Fork until the kernel says no.
        "forkbomb" => {
            let mut forked = 0u32;
            let errno = loop {
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    pause_forever();
                }
                if pid < 0 {
                    break std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                }
                forked += 1;
                if forked >= 5000 {
                    break 0;
                }
            };
            Response::ok(json!({"forked": forked, "errno": errno}))
        }
        "spin" => loop { std::hint::spin_loop() },
        // Try to read a file or list a directory given as ?path=.
        "read" => {
            let path = req.query_param("path").cloned().unwrap_or_default();
            let outcome = if req.query_param("list").is_some() {
                std::fs::read_dir(&path).map(|entries| entries.count())
            } else {
                std::fs::read(&path).map(|bytes| bytes.len())
            };
            match outcome {
                Ok(n) => Response::ok(json!({"ok": n})),
                Err(e) => Response::ok(json!({"error": format!("{:?}", e.kind())})),
            }
        }
        // Write ?path= (a file).
        "write" => {
            let path = req.query_param("path").cloned().unwrap_or_default();
            match std::fs::write(&path, b"written by another endpoint") {
                Ok(()) => Response::ok(json!({"ok": true})),
                Err(e) => Response::ok(json!({"error": format!("{:?}", e.kind())})),
            }
        }
        // Send SIGSTOP to ?pid=: 0 or the errno.
        "stop" => {
            let pid: i32 = req.query_param_as("pid").unwrap_or(0);
            let result = unsafe { libc::kill(pid, libc::SIGSTOP) };
            let errno = if result == 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) };
            Response::ok(json!({"errno": errno}))
        }
        // Connect to ?addr= (host:port) over TCP.
        "connect" => {
            let addr: std::net::SocketAddr = req.query_param("addr").and_then(|a| a.parse().ok()).unwrap();
            match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2)) {
                Ok(_) => Response::ok(json!({"connected": true})),
                Err(e) => Response::ok(json!({"error": format!("{:?}", e.kind())})),
            }
        }
        // Leave children behind: `setsid -f sleep <marker>`, and a double fork
        // whose grandchild calls setsid() itself.
        "orphans" => {
            let marker = req.query_param("marker").cloned().unwrap_or_default();
            let spawned = std::process::Command::new("setsid").args(["-f", "sleep", &marker]).status();
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                unsafe {
                    if libc::fork() == 0 {
                        libc::setsid();
                        let _ = std::process::Command::new("sleep").arg(&marker).exec();
                    }
                    libc::_exit(0);
                }
            }
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            Response::ok(json!({"setsid": spawned.map(|s| s.success()).unwrap_or(false)}))
        }
        // Who and where it is: uid, the pids it can see in /proc, its pid namespace.
        "who" => {
            let visible: Vec<u32> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            let ns = std::fs::read_link("/proc/self/ns/pid").unwrap().to_string_lossy().into_owned();
            Response::ok(json!({
                "uid": unsafe { libc::getuid() },
                "gid": unsafe { libc::getgid() },
                "visible": visible,
                "pid_namespace": ns,
                "own_pid": std::process::id(),
            }))
        }
        _ => Response::ok(json!({"pid": worker_id()})),
    }
}

handler_loop!(handle);
"""


PROBE_DEPENDENCIES = {"libc": "0.2"}


EXAMPLES = os.path.join(ROOT, "docs", "examples", "services")


def example(name):
    with open(os.path.join(EXAMPLES, name + ".rs")) as f:
        return f.read()
