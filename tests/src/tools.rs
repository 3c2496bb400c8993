//! External tools some tests run: the Python packages pinned in `tests/python-tools.txt`
//! (hadolint, check-jsonschema, kubernetes-validate, schemathesis) and programs such as
//! `kubectl`.
//!
//! The Python packages go into a virtual environment of their own, never the system
//! Python. It is made on first use, under a file lock, in the user's cache folder
//! (`$XDG_CACHE_HOME` or `~/.cache`, `learngreek/python-tools-<key>`), where `<key>` hashes
//! the requirements and the Python build: every test process of a run (nextest runs each
//! test in a process of its own), every later run and every clone reuse it, and a change of
//! the pins makes a new one.
//!
//! In CI (`CI` set) a tool that cannot be had fails the test; elsewhere the test is skipped
//! and says so ([`or_skip`]), also at the end of `scripts/test.sh`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The pinned requirements, compiled in so the venv always matches this build of the tests.
const REQUIREMENTS: &str = include_str!("../python-tools.txt");

/// The virtual environment with the tools of `tests/python-tools.txt`.
#[derive(Debug, Clone)]
pub struct PythonTools {
    venv: PathBuf,
}

impl PythonTools {
    /// The virtual environment, made (once, whoever asks first) when it does not exist yet;
    /// `Err` says why it cannot be had.
    pub fn get() -> Result<Self, String> {
        let python = python_build()?;
        let cache = cache_dir()?;
        let venv = cache.join(format!(
            "python-tools-{:016x}",
            fnv1a(&[REQUIREMENTS, &python].concat())
        ));
        let tools = Self { venv };
        if tools.is_complete() {
            return Ok(tools);
        }

        // Several test processes may get here at once: one installs, the others wait and
        // then find it complete. The lock is released when the file is closed, so a test
        // killed half-way leaves no stale lock, only a venv without its marker.
        fs::create_dir_all(&cache).map_err(|e| format!("create {}: {e}", cache.display()))?;
        let lock_path = tools.venv.with_extension("lock");
        let lock = fs::File::create(&lock_path)
            .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
        if !tools.is_complete() {
            tools.install()?;
        }
        Ok(tools)
    }

    /// The virtual environment's folder.
    pub fn path(&self) -> &Path {
        &self.venv
    }

    /// A program of the venv (`bin/<program>`), e.g. `hadolint` or `python`.
    pub fn command(&self, program: &str) -> Command {
        Command::new(self.venv.join("bin").join(program))
    }

    fn marker(&self) -> PathBuf {
        self.venv.join("installed-requirements.txt")
    }

    /// Written last, so its presence means every package is in place.
    fn is_complete(&self) -> bool {
        fs::read_to_string(self.marker()).is_ok_and(|text| text == REQUIREMENTS)
    }

    fn install(&self) -> Result<(), String> {
        eprintln!(
            "installing the pinned Python tools into {} (once)",
            self.venv.display()
        );
        if self.venv.exists() {
            fs::remove_dir_all(&self.venv)
                .map_err(|e| format!("remove the incomplete {}: {e}", self.venv.display()))?;
        }
        run(Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&self.venv))
        .map_err(|e| {
            format!("{e}\n(on Debian, `apt-get install python3-venv` brings the venv module)")
        })?;
        let requirements = self.venv.join("requirements.txt");
        fs::write(&requirements, REQUIREMENTS)
            .map_err(|e| format!("write {}: {e}", requirements.display()))?;
        run(self
            .command("python")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&requirements))?;
        let partial = self.marker().with_extension("partial");
        fs::write(&partial, REQUIREMENTS)
            .and_then(|()| fs::rename(&partial, self.marker()))
            .map_err(|e| format!("write {}: {e}", self.marker().display()))
    }
}

/// True in CI, where a missing tool must fail the test (`.ci/run` sets `CI`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "0" && value != "false")
}

/// The tool, or, when it cannot be had: a failure in CI, else `None` after printing why
/// `test` is skipped.
#[track_caller]
pub fn or_skip<T>(tool: Result<T, String>, test: &str) -> Option<T> {
    match tool {
        Ok(tool) => Some(tool),
        Err(reason) if in_ci() => panic!("{test}: a tool it needs is missing: {reason}"),
        Err(reason) => {
            eprintln!("SKIPPED {test}: {reason}\n(outside CI only; with CI=1 this is a failure)");
            note_skip(test, &reason);
            None
        }
    }
}

/// Adds the skip to the file `TEST_SKIP_LOG` names, which `scripts/test.sh` prints after
/// the run: the test runner shows a passing test's output only on request.
fn note_skip(test: &str, reason: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("TEST_SKIP_LOG") else {
        return;
    };
    let first_line = reason.lines().next().unwrap_or_default();
    let written = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{test}: {first_line}"));
    if let Err(e) = written {
        eprintln!(
            "cannot note the skip in {}: {e}",
            Path::new(&path).display()
        );
    }
}

/// `program`, when running it with `version_args` succeeds.
pub fn program(program: &str, version_args: &[&str]) -> Result<Command, String> {
    run(Command::new(program).args(version_args))
        .map(|_| Command::new(program))
        .map_err(|e| format!("{program} is not usable: {e}"))
}

/// Runs `command`; its output when it exits 0, else a message with its stderr.
fn run(command: &mut Command) -> Result<Output, String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The version and location of `python3`: a venv belongs to the interpreter it was made with.
fn python_build() -> Result<String, String> {
    let output = run(
        Command::new("python3").args(["-c", "import sys; print(sys.version, sys.executable)"])
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn cache_dir() -> Result<PathBuf, String> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".cache"))
            .ok_or("neither XDG_CACHE_HOME nor HOME is set")?,
    };
    Ok(base.join("learngreek"))
}

/// FNV-1a: a hash that stays the same across Rust releases (the std hasher may not), so
/// the venv's folder name does too.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
