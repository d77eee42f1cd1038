mod backpressure;
mod browser;
mod contract;
mod helpers;
mod original_page;
mod restart;
