//! One module per subcommand; each owns its clap args and a `run` that returns the process exit code.
pub mod action;
pub mod audit;
pub mod hook;
pub mod login;
pub mod operator;
pub mod report;
pub mod rules;
pub mod scan;
pub mod server;
