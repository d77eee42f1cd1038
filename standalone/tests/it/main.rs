mod backpressure;
mod contract;
mod helpers;
mod restart;
