//! One `pub async fn` per clause of the contract, named after it, with the
//! clause's text as its doc comment. Each returns an error that reads like a
//! bug report: what was expected, what came, on which log.

mod append;
mod broker;
mod checked;
mod exclusive;
mod faults;
mod idempotence;
mod members;
mod positions;
mod subscribe;

pub use append::*;
pub use broker::*;
pub use checked::*;
pub use exclusive::*;
pub use faults::*;
pub use idempotence::*;
pub use members::*;
pub use positions::*;
pub use subscribe::*;
