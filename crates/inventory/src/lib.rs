//! The API inventory: from transactions to endpoints (host, method, path template) with
//! what a security team wants to know of each, compared with declared OpenAPI documents.
//!
//! Pure data structures: no I/O and no clock (time is the packet time in observations).
//! Workers turn transactions into [`Observation`]s; one owner feeds them to [`Inventory`].

pub mod endpoint;
pub mod export;
pub mod inventory;
pub mod observe;
pub mod schema;
pub mod segment;
pub mod sensitive;
pub mod smallmap;
pub mod spec;
pub mod template;

pub use inventory::{Inventory, InventoryConfig, InventoryEvent};
pub use observe::{Cidr, Observation, ObserveConfig};
pub use sensitive::{Sensitive, SensitiveConfig};
