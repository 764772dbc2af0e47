//! occystrap: turn container images in any registry into OCI runtime
//! bundles, `docker load`-able tarballs and inspectable directories.
//!
//! The modules follow the data's path:
//! [`reference`] → [`registry`] → [`image`] → [`layer`] →
//! ([`unpack`] into a [`fsroot::RootDir`] → [`bundle`]) | [`export`].

pub mod bundle;
pub mod error;
pub mod export;
pub mod fsroot;
pub mod image;
pub mod layer;
pub mod output;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod unpack;

pub use error::{Error, Result};
