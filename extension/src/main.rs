//! `perfmon`: without arguments, the Lambda extension; with a subcommand, a tool
//! (`perfmon dashboard|alarms|--version|--help`). Everything lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        return perfmon::tools::run(args);
    }
    perfmon::logging::init_from_env();
    perfmon::run()
}
