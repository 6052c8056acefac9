//! End-to-end tests: a real daemon on loopback, real wasmtime, real redb,
//! the real plugins, spoken to over HTTP like a user would.
//!
//! One test binary (wasmtime's layout) keeps link time down.

mod actors;
mod cluster;
mod drain;
mod errors;
mod finetune;
mod inference;
mod jobs;
mod models;
mod pipelines;
mod resources;
mod restart;
mod sandbox;
mod stages;
