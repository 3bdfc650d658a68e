//! The Python venvs of the loopback servers written in Python (push
//! providers, S3): made by tests/venv.sh from PyPI under the Cargo target
//! directory, or named by an environment variable.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The python of tests/`dir`/'s venv: `$env_var`, or what tests/venv.sh
/// prints (making the venv first when its requirements changed).
pub fn python(dir: &str, env_var: &str) -> PathBuf {
    if let Some(python) = std::env::var_os(env_var) {
        return PathBuf::from(python);
    }
    let out = Command::new("bash")
        .arg(root().join("tests/venv.sh"))
        .arg(dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("running tests/venv.sh");
    assert!(
        out.status.success(),
        "tests/venv.sh {dir} failed (it needs python3 and PyPI)"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}
