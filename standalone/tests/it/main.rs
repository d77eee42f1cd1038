mod contract;
mod helpers;
