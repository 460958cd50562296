//! `replog bench`: a closed-loop load generator over the client protocol, measuring
//! committed appends per second and exact latency percentiles.

pub mod certs;
pub mod latency;
pub mod leadership;
pub mod load;
pub mod procfs;
pub mod report;
