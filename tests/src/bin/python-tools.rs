//! Makes the virtual environment of the tests' Python tools (`tests/python-tools.txt`)
//! when it does not exist yet, and prints its folder. `.ci/run` runs it before the tests,
//! so no test spends its time limit on the install; by hand it tells where the tools are
//! (`$(cargo run -q -p test-support --bin python-tools)/bin/hadolint deploy/Dockerfile`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test, with the value shown"
)]

use std::process::ExitCode;

use test_support::tools::PythonTools;

fn main() -> ExitCode {
    match PythonTools::get() {
        Ok(tools) => {
            println!("{}", tools.path().display());
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("python-tools: {reason}");
            ExitCode::FAILURE
        }
    }
}
