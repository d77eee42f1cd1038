//! The shared end-to-end contract (`alert_testkit::contract`) against the standalone
//! process: the same cases the distributed services pass.

use crate::helpers::Standalone;

alert_testkit::contract_tests!(Standalone::start);
