//! spoke-e2e harness
