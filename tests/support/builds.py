"""
The build plane's fakes and samples: a process reactor whose cargo and rustc
children the test plays, helpers that write a fake artifact, and real cargo
output captured once (see tests/test_build_cargo.py).
"""

import json
import os

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

from tests.support.fakes import SynchronousReactor

HELLO = """\
use rust_edge_gateway_sdk::prelude::*;

fn handle(req: Request) -> Response {
    Response::ok(json!({"message": "Hello, World!", "path": req.path, "method": req.method}))
}

handler_loop!(handle);
"""


TOOLCHAIN = b"""\
rustc 1.95.0 (59807616e 2026-04-14)
binary: rustc
commit-hash: 59807616e1fa2540724bfbac14d7976d7e4a3860
commit-date: 2026-04-14
host: x86_64-unknown-linux-gnu
release: 1.95.0
LLVM version: 22.1.2
"""


class FakeChild:
    """A spawned process: what it was started with, and controls to play it."""

    pid = 4242

    def __init__(self, proto, executable, args, env, path):
        self.proto = proto
        self.executable = executable
        self.args = list(args)
        self.env = dict(env)
        self.path = path
        self.signals = []
        self.stdin_closed = False

    # the IProcessTransport the protocol sees
    def closeStdin(self):
        self.stdin_closed = True

    def signalProcess(self, signal):
        self.signals.append(signal)

    # the test's controls
    def out(self, data):
        for line in data.splitlines(keepends=True):
            self.proto.childDataReceived(1, line)

    def err(self, data):
        self.proto.childDataReceived(2, data)

    def exit(self, code=0):
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
        self.proto.processEnded(Failure(reason))

    def killed(self, signal=9):
        self.proto.processEnded(Failure(ProcessTerminated(signal=signal)))


class ProcessReactor(SynchronousReactor):
    """A memory reactor and clock that records child processes instead of starting them."""

    def __init__(self):
        super().__init__()
        self.children = []

    def spawnProcess(self, processProtocol, executable, args=(), env={}, path=None, uid=None, gid=None, usePTY=0, childFDs=None):
        child = FakeChild(processProtocol, executable, args, env, path)
        self.children.append(child)
        processProtocol.makeConnection(child)
        return child


def artifact_line(package, executable):
    """A compiler-artifact message for the handler binary, shaped like cargo's."""
    return json.dumps(
        {
            "reason": "compiler-artifact",
            "target": {"kind": ["bin"], "name": package},
            "executable": executable,
            "fresh": False,
        }
    ).encode() + b"\n"


def executable(path, content=b"\x7fELF fake handler"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    os.chmod(path, 0o755)
    return path


# Two errors (lines 5 and 6) in a handler whose line 4 also has an unused
# variable; rustc stops before reporting the warning.
BROKEN = b"""\
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde_json@1.0.87","manifest_path":"/usr/share/cargo/registry/serde_json-1.0.87/Cargo.toml","target":{"kind":["custom-build"],"crate_types":["bin"],"name":"build-script-build","src_path":"/usr/share/cargo/registry/serde_json-1.0.87/build.rs","edition":"2018","doc":false,"doctest":false,"test":false},"profile":{"opt_level":"0","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":["default","std"],"filenames":["/var/lib/edgegw/build/target/release/build/serde_json-08719fe485d4563f/build-script-build"],"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde_json@1.0.87","manifest_path":"/usr/share/cargo/registry/serde_json-1.0.87/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"serde_json","src_path":"/usr/share/cargo/registry/serde_json-1.0.87/src/lib.rs","edition":"2018","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":["default","std"],"filenames":["/var/lib/edgegw/build/target/release/deps/libserde_json-fc1764b691df5982.rlib","/var/lib/edgegw/build/target/release/deps/libserde_json-fc1764b691df5982.rmeta"],"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///opt/edgegw/rust_sdk#rust-edge-gateway-sdk@0.1.0","manifest_path":"/opt/edgegw/rust_sdk/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"rust_edge_gateway_sdk","src_path":"/opt/edgegw/rust_sdk/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/var/lib/edgegw/build/target/release/deps/librust_edge_gateway_sdk-5c3953b176c71485.rlib","/var/lib/edgegw/build/target/release/deps/librust_edge_gateway_sdk-5c3953b176c71485.rmeta"],"executable":null,"fresh":true}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/broken#h-broken@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/broken/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-broken","src_path":"/var/lib/edgegw/build/endpoints/broken/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"error[E0308]: mismatched types\\n --> src/main.rs:5:18\\n  |\\n5 |     let x: u32 = \\"text\\";\\n  |            ---   ^^^^^^ expected `u32`, found `&str`\\n  |            |\\n  |            expected due to this\\n\\n","$message_type":"diagnostic","children":[],"level":"error","message":"mismatched types","spans":[{"byte_end":121,"byte_start":115,"column_end":24,"column_start":18,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":"expected `u32`, found `&str`","line_end":5,"line_start":5,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":24,"highlight_start":18,"text":"    let x: u32 = \\"text\\";"}]},{"byte_end":112,"byte_start":109,"column_end":15,"column_start":12,"expansion":null,"file_name":"src/main.rs","is_primary":false,"label":"expected due to this","line_end":5,"line_start":5,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":15,"highlight_start":12,"text":"    let x: u32 = \\"text\\";"}]}],"code":{"code":"E0308","explanation":"Expected type did not match the received type.\\n\\nErroneous code examples:\\n\\n```compile_fail,E0308\\nfn plus_one(x: i32) -> i32 {\\n    x + 1\\n}\\n\\nplus_one(\\"Not a number\\");\\n//       ^^^^^^^^^^^^^^ expected `i32`, found `&str`\\n\\nif \\"Not a bool\\" {\\n// ^^^^^^^^^^^^ expected `bool`, found `&str`\\n}\\n\\nlet x: f32 = \\"Not a float\\";\\n//     ---   ^^^^^^^^^^^^^ expected `f32`, found `&str`\\n//     |\\n//     expected due to this\\n```\\n\\nThis error occurs when an expression was used in a place where the compiler\\nexpected an expression of a different type. It can occur in several cases, the\\nmost common being when calling a function and passing an argument which has a\\ndifferent type than the matching type in the function declaration.\\n"}}}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/broken#h-broken@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/broken/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-broken","src_path":"/var/lib/edgegw/build/endpoints/broken/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"error[E0609]: no field `pth` on type `rust_edge_gateway_sdk::Request`\\n --> src/main.rs:6:37\\n  |\\n6 |     Response::ok(json!({\\"path\\": req.pth}))\\n  |                                     ^^^ unknown field\\n  |\\nhelp: a field with a similar name exists\\n  |\\n6 |     Response::ok(json!({\\"path\\": req.path}))\\n  |                                      +\\n\\n","$message_type":"diagnostic","children":[{"children":[],"code":null,"level":"help","message":"a field with a similar name exists","rendered":null,"spans":[{"byte_end":162,"byte_start":159,"column_end":40,"column_start":37,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":null,"line_end":6,"line_start":6,"suggested_replacement":"path","suggestion_applicability":"MaybeIncorrect","text":[{"highlight_end":40,"highlight_start":37,"text":"    Response::ok(json!({\\"path\\": req.pth}))"}]}]}],"level":"error","message":"no field `pth` on type `rust_edge_gateway_sdk::Request`","spans":[{"byte_end":162,"byte_start":159,"column_end":40,"column_start":37,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":"unknown field","line_end":6,"line_start":6,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":40,"highlight_start":37,"text":"    Response::ok(json!({\\"path\\": req.pth}))"}]}],"code":{"code":"E0609","explanation":"Attempted to access a nonexistent field in a struct.\\n\\nErroneous code example:\\n\\n```compile_fail,E0609\\nstruct StructWithFields {\\n    x: u32,\\n}\\n\\nlet s = StructWithFields { x: 0 };\\nprintln!(\\"{}\\", s.foo); // error: no field `foo` on type `StructWithFields`\\n```\\n\\nTo fix this error, check that you didn't misspell the field's name or that the\\nfield actually exists. Example:\\n\\n```\\nstruct StructWithFields {\\n    x: u32,\\n}\\n\\nlet s = StructWithFields { x: 0 };\\nprintln!(\\"{}\\", s.x); // ok!\\n```\\n"}}}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/broken#h-broken@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/broken/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-broken","src_path":"/var/lib/edgegw/build/endpoints/broken/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"Some errors have detailed explanations: E0308, E0609.\\n","$message_type":"diagnostic","children":[],"level":"failure-note","message":"Some errors have detailed explanations: E0308, E0609.","spans":[],"code":null}}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/broken#h-broken@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/broken/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-broken","src_path":"/var/lib/edgegw/build/endpoints/broken/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"For more information about an error, try `rustc --explain E0308`.\\n","$message_type":"diagnostic","children":[],"level":"failure-note","message":"For more information about an error, try `rustc --explain E0308`.","spans":[],"code":null}}
{"reason":"build-finished","success":false}
"""


# A handler with an unused variable on line 4 that compiles, against an SDK
# with an unused variable of its own: the SDK's warning must not reach the user.
WARN = b"""\
{"reason":"compiler-message","package_id":"path+file:///opt/edgegw/rust_sdk#rust-edge-gateway-sdk@0.1.0","manifest_path":"/opt/edgegw/rust_sdk/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"rust_edge_gateway_sdk","src_path":"/opt/edgegw/rust_sdk/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"message":{"rendered":"warning: unused variable: `sdk_unused`\\n  --> /opt/edgegw/rust_sdk/src/lib.rs:10:9\\n   |\\n10 |     let sdk_unused = 1;\\n   |         ^^^^^^^^^^ help: if this is intentional, prefix it with an underscore: `_sdk_unused`\\n   |\\n   = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\\n\\n","$message_type":"diagnostic","children":[{"children":[],"code":null,"level":"note","message":"`#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default","rendered":null,"spans":[]},{"children":[],"code":null,"level":"help","message":"if this is intentional, prefix it with an underscore","rendered":null,"spans":[{"byte_end":542,"byte_start":532,"column_end":19,"column_start":9,"expansion":null,"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":true,"label":null,"line_end":10,"line_start":10,"suggested_replacement":"_sdk_unused","suggestion_applicability":"MachineApplicable","text":[{"highlight_end":19,"highlight_start":9,"text":"    let sdk_unused = 1;"}]}]}],"level":"warning","message":"unused variable: `sdk_unused`","spans":[{"byte_end":542,"byte_start":532,"column_end":19,"column_start":9,"expansion":null,"file_name":"/opt/edgegw/rust_sdk/src/lib.rs","is_primary":true,"label":null,"line_end":10,"line_start":10,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":19,"highlight_start":9,"text":"    let sdk_unused = 1;"}]}],"code":{"code":"unused_variables","explanation":null}}}
{"reason":"compiler-artifact","package_id":"path+file:///opt/edgegw/rust_sdk#rust-edge-gateway-sdk@0.1.0","manifest_path":"/opt/edgegw/rust_sdk/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"rust_edge_gateway_sdk","src_path":"/opt/edgegw/rust_sdk/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/var/lib/edgegw/build/target/release/deps/librust_edge_gateway_sdk-5c3953b176c71485.rlib","/var/lib/edgegw/build/target/release/deps/librust_edge_gateway_sdk-5c3953b176c71485.rmeta"],"executable":null,"fresh":false}
{"reason":"compiler-message","package_id":"path+file:///var/lib/edgegw/build/endpoints/warn#h-warn@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/warn/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-warn","src_path":"/var/lib/edgegw/build/endpoints/warn/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"message":{"rendered":"warning: unused variable: `unused`\\n --> src/main.rs:4:9\\n  |\\n4 |     let unused = 5;\\n  |         ^^^^^^ help: if this is intentional, prefix it with an underscore: `_unused`\\n  |\\n  = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default\\n\\n","$message_type":"diagnostic","children":[{"children":[],"code":null,"level":"note","message":"`#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default","rendered":null,"spans":[]},{"children":[],"code":null,"level":"help","message":"if this is intentional, prefix it with an underscore","rendered":null,"spans":[{"byte_end":92,"byte_start":86,"column_end":15,"column_start":9,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":null,"line_end":4,"line_start":4,"suggested_replacement":"_unused","suggestion_applicability":"MachineApplicable","text":[{"highlight_end":15,"highlight_start":9,"text":"    let unused = 5;"}]}]}],"level":"warning","message":"unused variable: `unused`","spans":[{"byte_end":92,"byte_start":86,"column_end":15,"column_start":9,"expansion":null,"file_name":"src/main.rs","is_primary":true,"label":null,"line_end":4,"line_start":4,"suggested_replacement":null,"suggestion_applicability":null,"text":[{"highlight_end":15,"highlight_start":9,"text":"    let unused = 5;"}]}],"code":{"code":"unused_variables","explanation":null}}}
{"reason":"compiler-artifact","package_id":"path+file:///var/lib/edgegw/build/endpoints/warn#h-warn@0.1.0","manifest_path":"/var/lib/edgegw/build/endpoints/warn/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"h-warn","src_path":"/var/lib/edgegw/build/endpoints/warn/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/var/lib/edgegw/build/target/release/h-warn"],"executable":"/var/lib/edgegw/build/target/release/h-warn","fresh":false}
{"reason":"build-finished","success":true}
"""


# cargo's stderr when a dependency is not among Debian's crates: no rustc
# message at all, exit code 101.
RESOLVE_STDERR = b"""\
error: no matching package named `chrono` found
location searched: directory source `/usr/share/cargo/registry` (which is replacing registry `crates-io`)
required by package `h-resolve v0.1.0 (/var/lib/edgegw/build/endpoints/resolve)`
As a reminder, you're using offline mode (--offline) which can sometimes cause surprising resolution failures, if this error is too confusing you may wish to retry without `--offline`.
"""
