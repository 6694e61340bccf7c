//! The `portcullis` binary: parse the command line and hand over.

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
