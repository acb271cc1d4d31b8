//! spoke-dedupe
