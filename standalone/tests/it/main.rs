mod backpressure;
mod browser;
mod contract;
mod exit;
mod helpers;
mod original_page;
mod restart;
