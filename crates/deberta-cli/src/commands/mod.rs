//! One module per subcommand.

pub mod forward;
