//! TODO
pub mod auth;
