//! What the end-to-end suite (`tests/tests/suite/`, one test binary) shares: [`common`] (where things
//! are, the sample functions as runtimes, extension directories, moto behind the CBOR proxy, ports,
//! temp dirs) and [`custom_support`] (the custom-metric tests' start-up and read-back).

pub mod common;
pub mod custom_support;
