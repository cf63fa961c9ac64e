//! `perfmon`: without arguments, the Lambda extension; with a subcommand, a tool
//! (`perfmon dashboard|alarms|--version|--help`). Everything lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `args_os` with a lossy conversion: `std::env::args` panics on an argument that is not UTF-8.
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if !args.is_empty() {
        return perfmon_tools::run(args);
    }
    perfmon::logging::init_from_env();
    perfmon::run()
}
