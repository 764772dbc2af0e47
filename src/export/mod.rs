//! TODO
pub mod docker_save;
