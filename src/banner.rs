//! The start-up banner: what a person needs to know once the monitor is
//! ready (where it listens, where the data is, whether the API is open).
