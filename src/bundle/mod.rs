//! TODO
pub mod convert;
pub mod users;
