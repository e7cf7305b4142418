//! Support shared by the controller's integration tests (each test file includes what it uses).
#![allow(dead_code)]

pub mod cli;
pub mod figures;
pub mod generated;
pub mod http;
pub mod netns;
pub mod process;
pub mod proxy;
pub mod rbac;
pub mod rng;
