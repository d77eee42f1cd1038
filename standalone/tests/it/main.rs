mod backpressure;
mod browser;
mod contract;
mod helpers;
mod restart;
