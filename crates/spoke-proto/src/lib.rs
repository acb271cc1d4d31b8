//! spoke-proto
